"""``sketchbench demo``: draw a sketch in the browser and see what trained models retrieve."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sketchbench.cli.options import SEED, plugin_host, preset_options

EPILOG = """\b
Examples:
  sketchbench demo                                   # the README's main job on synthetic (trains once: minutes)
  sketchbench demo --preset smoke                    # the same in seconds (numbers mean nothing)
  sketchbench demo --dataset chairv2 --data-root ../shared/data/chairv2
  sketchbench demo --results results/run-abc.json    # serve the models of a results file (no training)
  sketchbench demo --port 8080 --host 0.0.0.0        # reachable from other machines (no authentication!)
"""


@click.command(epilog=EPILOG)
@click.option("--results", "-r", "results_path", type=click.Path(path_type=Path), default=None,
              help="Serve this results file's models (restored from the cache, never trained). "
                   "Default: run the main job first (as 'sketchbench run'), reusing what is trained.")
@click.option("--method", "-m", "methods", multiple=True,
              help="The method to train and serve (default sketchynet-v2: with its teacher and upstream, so the page "
                   "switches between all three). With --results: only these methods' cells.")
@click.option("--dataset", "-d", default=None, help="Dataset (default: synthetic; with --results: the file's).")
@preset_options
@click.option("--seed", type=SEED, default=None, help="Seed (default 0; with --results: the file's first).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="Dataset root (or SKETCHBENCH_DATA).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Artifact cache (or SKETCHBENCH_CACHE_DIR).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--gallery", "-g", default="test", show_default=True,
              help="'test' (the dataset's test split), 'train', or a folder of photos (.jpg/.png).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the demo to other machines, "
                   "without authentication.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests addressed to this host name (e.g. the machine's DNS name on a LAN); "
                   "others are refused, against DNS rebinding (repeat).")
@click.option("--request-timeout", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="Seconds a client may take to send one request; a stalled upload is dropped after it.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Results JSON of the run (default: what 'sketchbench run' writes, results/run-<hash>.json).")
def demo(results_path, methods, dataset, preset, overrides, seed, data_root, cache_dir, device, gallery, host, allow_hosts,
         request_timeout, port, out) -> None:
    """A local web page: draw with mouse or pen, see the top-10 photos and their distances, the canvas a
    dynamic method chose (and the sketch as rendered there), the FLOPs spent; switch between methods.

    Without --results it first runs 'sketchbench run --method sketchynet-v2 --dataset synthetic' (same
    preset and results file, so a model trained by that command is reused, and the other way round),
    then serves every finished model of that run. Stop it with Ctrl-C.
    """
    from sketchbench.base.artifacts import default_cache_dir
    from sketchbench.base.errors import SketchbenchError
    from sketchbench.demo.server import DemoApp, is_loopback, load_models, make_server

    cache_dir = cache_dir or default_cache_dir()
    built: dict = {}
    if results_path is None:
        from sketchbench.base.artifacts import stable_hash
        from sketchbench.method.params import parse_key_values
        from sketchbench.run.api import run_config, runner_for

        host_ = plugin_host()
        config = run_config(tuple(methods) or ("sketchynet-v2",), (dataset or "synthetic",), preset=preset,
                            overrides=parse_key_values(overrides, "--set"), seeds=[0 if seed is None else seed],
                            device=device, host=host_, data_root=data_root, cache_dir=cache_dir, out=out)
        runner = runner_for(config, host_, preset_named=preset is not None)
        click.echo(f"training or reusing {', '.join(runner.plan.chain_methods())} on {config.datasets[0]} "
                   f"(preset {runner.config.preset.name}; cached models are reused) ...", err=True)
        results, _ = runner.run()
        results_path = Path(results["path"])
        failed = [c for c in results["cells"] if c.get("status") != "ok"]
        for c in failed:
            click.echo(f"warning: {c['method']} @ {c['canvas']} failed: {c.get('error')}", err=True)
        click.echo(f"models: {results_path}", err=True)
        built[stable_hash(runner.config.rebuild_record())] = runner.models
        methods = ()
    elif preset is not None or overrides:
        raise SketchbenchError("--preset/--set do not apply with --results: the results file says how its models were trained")
    models = load_models(results_path, methods=tuple(methods), dataset=dataset, seed=seed, data_root=data_root,
                         cache_dir=cache_dir, device=device, models=built)
    app = DemoApp(models, gallery=gallery, title=f"sketchbench demo: {models[0].cell['dataset']}")
    app.warm_up()
    server = make_server(app, host, port, allow_hosts=tuple(allow_hosts), timeout=request_timeout)
    if not is_loopback(host):
        click.echo(f"warning: --host {host} makes the demo reachable from other machines, without authentication: "
                   "anyone who can reach this port can query the models and see the gallery photos", err=True)
    url = f"http://{host}:{server.server_address[1]}/"
    click.echo(f"serving {len(models)} models ({', '.join(m.label for m in app.models)}) on {len(app.models[0].retriever.gallery)}"
               " gallery photos", err=True)
    click.echo(f"demo: {url}  (Ctrl-C stops it)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.server_close()


#: the commands this module adds to ``sketchbench`` (:mod:`sketchbench.cli.main`)
COMMANDS = (demo,)
