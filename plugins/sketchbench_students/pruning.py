"""The paper's pruning baselines: the trained teacher's own network, pruned to a FLOPs budget
with torch-pruning and fine-tuned with the triplet loss.

Both start from a deep copy of ``teacher.sketch_branch()`` (features + pool, plus whatever head
the teacher counts, e.g. Sketch-a-Net's fc6/fc7). The copy embeds photos too: a Siamese,
shared-weight network as in Triplet-SN and VGG16-SN. Teacher-specific extras outside the sketch
branch are not kept: a separate photo network, photo edge maps, HOLEF's learned energy,
Partial-OT's transport distance. The pruned network is fine-tuned and evaluated as a
Euclidean triplet network on L2-normalised outputs. Inputs go through the teacher's own
``prepare_sketch`` (its input scaling and channel count), photos too: e.g. Triplet-SN's grey
photo rather than its optional edge map. The teacher's final embedding layer (the last Conv/Linear that runs)
is in ``ignored_layers``, so the embedding keeps its size.

The budget ``flops_ratio`` is a fraction of the teacher's sketch-branch FLOPs at the preset's
full canvas. Defaults are the paper's table: ThiNet 9.342 / 40.18 GFLOPs, Prune 8.138 / 40.18.
Pruning uses full-canvas training sketches (and photos) and is cached per (teacher, data,
pruning params) in memory and in the artifact cache. Like the teacher they compress, both are
then fine-tuned per evaluated canvas (``multi_canvas = False``).

- **B-ThiNet** (Luo et al. ICCV'17), layer by layer in forward order. To prune conv layer i, hooks
  on its consumers (layer i+1: every non-depthwise Conv2d/Linear reading those channels,
  through depthwise convs and residual adds, as torch-pruning's dependency graph says) record,
  at random sampled locations of the consumer's output (``locations`` per image and a random
  output channel each), the contribution ``x̂_c`` of every input channel (kernel slice × input
  patch). A greedy removal set T minimises ``Σ (Σ_{c∈T} x̂_c)²`` (:func:`thinet_greedy_selection`).
  The chosen channels go through ``DG.get_pruning_group(conv, prune_conv_out_channels, idxs)``,
  the kept channels of each consumer are rescaled by least squares, and the network is fine-tuned
  for ``layer_finetune_steps`` steps before the next layer. A pass prunes every layer to
  ``sqrt(flops_ratio)`` of its channels; later passes remove another 20 % per layer. Pruning
  stops as soon as the FLOPs are at or below the budget. With several consumers each one's
  samples are divided by the RMS of its output so none dominates; the exact sample counts of the
  paper are unverified.
- **B-Prune** (Molchanov et al. 2016): the first-order Taylor criterion ``|mean(z · ∂C/∂z)|``
  per feature map (the conv's output; equal to the post-ReLU criterion when a ReLU follows, as in
  VGG), accumulated over the fine-tuning minibatches and L2-normalised per layer. This is a
  custom ``tp.importance.Importance``, not torch-pruning's weight-based TaylorImportance
  (Molchanov 2019). Coupled layers (residual adds) sum their normalised scores; exact ties (zero
  gradients once every fine-tuning triplet meets the margin) are broken by 1e-6 × the filters'
  normalised L2 norms. A global
  ``tp.pruner.BasePruner`` removes ``channels_per_step`` of the channels per iteration, each
  iteration after ``step_finetune_steps`` fine-tuning steps; the iteration's groups are pruned one
  by one (``step(interactive=True)``) and pruning stops at the first group that meets the budget.

State: ``state()`` stores the torch-pruning history (module name, out/in, indices), the pruned
weights and the teacher's class path, name and params. ``load_state()`` rebuilds the teacher's
architecture from that class (random init), replays the history on a deep copy of its sketch
branch and loads the weights, so a reload gives identical embeddings without the teacher.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData, SketchbenchError, count_flops, stable_hash
from sketchbench.training import Trainer

from .losses import layer_l2_normalise, taylor_criterion, thinet_greedy_selection, thinet_least_squares
from .mobilenetv2_sn import TRIPLET_PARAMS, TripletStudent
from .teacher_cache import teacher_identity

log = logging.getLogger("sketchbench")

#: bump when the pruning procedure changes (invalidates cached pruned structures)
PRUNE_VERSION = "1"
#: new address space torch-pruning's graph analysis may take before it is stopped (see graph_guard)
GRAPH_MEMORY_BYTES = 2 * 2**30
#: weight of the filter-norm tie-breaker added to Taylor scores
TIE_BREAK = 1e-6


# -- helpers ----------------------------------------------------------------------------------------
def is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels


def layer_order(net: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Conv2d / Linear modules of ``net`` in the order a forward pass runs them."""
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda m, i, o: order.append(m))
               for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was = net.training
    try:
        with torch.no_grad():
            net.eval()(example)
    finally:
        net.train(was)
        for h in handles:
            h.remove()
    return list(dict.fromkeys(order))


def teacher_spec(teacher: Method) -> dict[str, Any]:
    """What rebuilds the teacher's (untrained) architecture: class path, name, params, seed."""
    cls = type(teacher)
    return {"module": cls.__module__, "class": cls.__qualname__, "name": teacher.ctx.name,
            "params": dict(teacher.ctx.params), "seed": int(teacher.ctx.seed),
            "in_chans": int(teacher.sketch_input(8).shape[1])}


def rebuild_teacher(spec: dict[str, Any], ctx: MethodContext) -> Method:
    """A fresh (untrained) teacher of the recorded class: its architecture and input scaling."""
    try:
        cls = getattr(importlib.import_module(spec["module"]), spec["class"])
    except (ImportError, AttributeError):
        raise SketchbenchError(f"cannot rebuild teacher {spec['name']!r}: {spec['module']}.{spec['class']} "
                               "is not importable") from None
    return cls(MethodContext(name=spec["name"], params=dict(spec["params"]), preset=ctx.preset,
                             device=torch.device("cpu"), seed=spec["seed"]))


def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def graph_guard(name: str) -> Iterator[None]:
    """Run torch-pruning's dependency analysis with a cap on new address space.

    On some graphs (e.g. HOLEF-SN's attention: flatten → softmax → view, then a broadcast
    multiply) torch-pruning's index mapping grows without bound and the process would be killed
    for memory; under the cap it fails with a MemoryError, reported as one clear line. The cap is
    skipped once CUDA is initialised (its driver maps large virtual ranges of its own).
    """
    vm = None if torch.cuda.is_initialized() else _vm_bytes()
    try:
        import resource
    except ImportError:  # not POSIX: no cap
        resource = None  # type: ignore[assignment]
    old = None
    if resource is not None and vm is not None:
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = vm + GRAPH_MEMORY_BYTES
        if old[0] == resource.RLIM_INFINITY or cap < old[0]:
            resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
        else:
            old = None
    try:
        yield
    except MemoryError:
        raise SketchbenchError(
            f"{name}: torch-pruning cannot analyse the teacher's sketch branch (its dependency graph grows "
            f"beyond {GRAPH_MEMORY_BYTES >> 30} GiB); this teacher's architecture is not supported by the pruners"
        ) from None
    finally:
        if old is not None:
            resource.setrlimit(resource.RLIMIT_AS, old)


def build_graph(net: nn.Module, example: torch.Tensor, name: str) -> tp.DependencyGraph:
    was = net.training
    net.eval()
    try:
        with graph_guard(name):
            return tp.DependencyGraph().build_dependency(net, example_inputs=example, verbose=False)
    except SketchbenchError:
        raise
    except Exception as exc:
        raise SketchbenchError(f"{name}: torch-pruning cannot trace the teacher's sketch branch "
                               f"({type(exc).__name__}: {exc})") from None
    finally:
        net.train(was)


def clean_history(history: Sequence[Any]) -> list[list[Any]]:
    """The dependency graph's pruning history as plain lists (safe for ``weights_only`` loads)."""
    return [[str(n), bool(out), [int(i) for i in idxs]] for n, out, idxs in history]


class FlopsBudget:
    """Tracks a network's FLOPs against a target while it is pruned step by step.

    Counting FLOPs deep-copies and traces the network, so it is done only when the last change
    may have reached the target: between counts, each change is assumed to remove at most twice
    the largest mean drop per change seen so far. Only measured values decide :attr:`reached`,
    so the budget is never declared met early; at worst pruning stops a change or two late.
    """

    def __init__(self, count: Any, target: float) -> None:
        self.count, self.target = count, float(target)
        self.flops = float(count())
        self.pending = 0
        self.max_drop: float | None = None
        self.measured = 1

    @property
    def reached(self) -> bool:
        return self.pending == 0 and self.flops <= self.target

    def changed(self) -> None:
        self.pending += 1
        if self.max_drop is None or self.flops - 2.0 * self.max_drop * self.pending <= self.target:
            self.measure()

    def measure(self) -> float:
        if self.pending:
            new = float(self.count())
            self.measured += 1
            drop = max(0.0, (self.flops - new) / self.pending)
            self.max_drop = drop if self.max_drop is None else max(self.max_drop, drop)
            self.flops, self.pending = new, 0
        return self.flops


# -- ThiNet -----------------------------------------------------------------------------------------
def conv_contributions(
    x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
    b: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, k: torch.Tensor,
) -> torch.Tensor:
    """Per-input-channel contributions ``(S, C)`` to the outputs ``y[b, k, oy, ox]`` of a groups=1
    convolution (zero padding, no bias): ``x̂_c = Σ_{i,j} W[k, c, i, j] · x_pad[b, c, oy·s + i·d, ox·s + j·d]``.
    ``padding`` is ``(ph, pw)`` or ``F.pad``'s ``(left, right, top, bottom)``."""
    kh, kw = weight.shape[-2:]
    pad4 = tuple(padding) if len(padding) == 4 else (padding[1], padding[1], padding[0], padding[0])
    xp = nn.functional.pad(x, pad4)
    rows = oy.unsqueeze(1) * stride[0] + torch.arange(kh, device=x.device) * dilation[0]  # (S, kh)
    cols = ox.unsqueeze(1) * stride[1] + torch.arange(kw, device=x.device) * dilation[1]  # (S, kw)
    patch = xp[b[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (S, kh, kw, C)
    return torch.einsum("sijc,scij->sc", patch.float(), weight[k].float())


class _ConsumerSampler:
    """Forward hook on one consumer layer: at sampled output elements, the contribution of each
    of its input channels (aggregated onto the root layer's channels)."""

    def __init__(self, module: nn.Module, in_idxs: list[int], root_pos: list[int], n_root: int,
                 locations: int, generator: torch.Generator) -> None:
        self.module, self.n_root, self.locations, self.gen = module, n_root, locations, generator
        self.in_idxs = torch.tensor(in_idxs)
        self.root_pos = torch.tensor(root_pos)
        self.rows: list[torch.Tensor] = []

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        x = inputs[0].detach()
        w = module.weight.detach()
        n = x.shape[0] * self.locations
        b = torch.arange(x.shape[0]).repeat_interleave(self.locations)
        k = torch.randint(0, w.shape[0], (n,), generator=self.gen)
        if isinstance(module, nn.Conv2d):
            ho, wo = output.shape[-2:]
            oy = torch.randint(0, ho, (n,), generator=self.gen)
            ox = torch.randint(0, wo, (n,), generator=self.gen)
            # the padding F.pad applies ('same' and asymmetric paddings included); reflect/replicate
            # padding modes are approximated by zeros
            pad4 = getattr(module, "_reversed_padding_repeated_twice", None) or (
                module.padding[1], module.padding[1], module.padding[0], module.padding[0])
            contrib = conv_contributions(x.cpu(), w.cpu(), module.stride, pad4, module.dilation, b, oy, ox, k)
        else:  # Linear: feature f contributes x_f · W[k, f]
            xf = x.flatten(1).cpu().float()
            contrib = xf[b] * w.cpu().float()[k]
        rows = torch.zeros(n, self.n_root).index_add_(1, self.root_pos, contrib[:, self.in_idxs])
        self.rows.append(rows)

    def samples(self) -> torch.Tensor:
        return torch.cat(self.rows) if self.rows else torch.zeros(0, self.n_root)


# -- Molchanov 2016 ---------------------------------------------------------------------------------
class MolchanovTaylorImportance(tp.importance.Importance):
    """Molchanov et al. 2016's criterion as a torch-pruning importance.

    :meth:`attach` puts hooks on every Conv2d of a network: each forward keeps the layer's output
    z, each backward adds ``taylor_criterion(z, ∂C/∂z)`` (per example ``|mean_spatial(z·g)|``,
    batch mean) to a running mean. ``__call__(group)`` returns, per channel of the group's root,
    the per-layer L2-normalised scores summed over the group's out-channel-pruned layers (one
    layer in a plain chain, several across residual adds); ``None`` (skip) when no layer of the
    group has scores yet.
    """

    def __init__(self) -> None:
        self._sum: dict[nn.Module, torch.Tensor] = {}
        self._count: dict[nn.Module, int] = {}
        self._handles: list[Any] = []

    def attach(self, net: nn.Module) -> MolchanovTaylorImportance:
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                self._handles.append(m.register_forward_hook(self._forward_hook))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def reset(self) -> None:
        self._sum.clear()
        self._count.clear()

    def _forward_hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if not (torch.is_grad_enabled() and output.requires_grad):
            return
        z = output.detach().clone()  # the next op may be an in-place activation

        def on_grad(grad: torch.Tensor) -> None:
            self.add(module, taylor_criterion(z, grad).cpu())

        output.register_hook(on_grad)

    def add(self, module: nn.Module, scores: torch.Tensor) -> None:
        if module in self._sum and self._sum[module].shape == scores.shape:
            self._sum[module] += scores
            self._count[module] += 1
        else:  # first batch, or the layer was pruned since
            self._sum[module] = scores.clone()
            self._count[module] = 1

    def layer_scores(self, module: nn.Module) -> torch.Tensor | None:
        if module not in self._sum:
            return None
        return layer_l2_normalise(self._sum[module] / self._count[module])

    def __call__(self, group: Any) -> torch.Tensor | None:
        root_idxs = list(group[0].root_idxs)
        pos = {r: i for i, r in enumerate(root_idxs)}
        imp = torch.zeros(len(root_idxs))
        found = False
        for item in group:
            dep, idxs = item.dep, item.idxs
            module = dep.target.module
            if not isinstance(module, nn.Conv2d) or getattr(dep.handler, "__name__", "") != "prune_out_channels":
                continue
            scores = self.layer_scores(module)
            if scores is None or scores.numel() != module.out_channels:
                continue
            # ties (all-zero gradients when every fine-tuning triplet already meets the margin) are
            # broken by the filters' L2 norms, 1e-6 times smaller than any real Taylor score scale
            norms = layer_l2_normalise(module.weight.detach().flatten(1).norm(dim=1).float().cpu())
            where = torch.tensor([pos[r] for r in item.root_idxs])
            sel = torch.tensor(list(idxs))
            imp.index_add_(0, where, scores[sel] + TIE_BREAK * norms[sel])
            found = True
        return imp if found else None


# -- the methods ------------------------------------------------------------------------------------
PRUNE_COMMON: dict[str, Param] = {
    **TRIPLET_PARAMS,
    "thinet_images": Param(64, "training sketches (and as many photos) whose activations drive pruning",
                           presets={"smoke": 8}, min=1, max=100000),
}


class _PrunedTeacher(TripletStudent):
    kind = "baseline"
    needs_teacher = True
    default_teacher = "triplet-sn"
    multi_canvas = False
    #: params that change the pruned structure (the rest only the final fine-tuning)
    prune_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.history: list[list[Any]] = []
        self.spec: dict[str, Any] | None = None
        self.example_canvas = 0
        self.report: dict[str, float] = {}
        #: the teacher (or a fresh one of its class after a reload): its ``prepare_sketch`` scales inputs
        self._prep: Method | None = None

    # -- inference ------------------------------------------------------------------------------
    def prepare_sketch(self, images: torch.Tensor) -> torch.Tensor:
        if self._prep is None:
            raise SketchbenchError(f"{self.ctx.name}: no network yet (it is built from a trained teacher)")
        return self._prep.prepare_sketch(images).to(self.device)

    def forward(self, images: torch.Tensor, with_map: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self._net()(self.prepare_sketch(images))
        return F.normalize(emb.float().flatten(1), dim=-1), None

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"state_dict": self._net().state_dict(), "history": self.history, "teacher": self.spec,
                "in_chans": self.in_chans, "example_canvas": self.example_canvas, "report": dict(self.report)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.spec = state["teacher"]
        self.in_chans = int(state["in_chans"])
        self.example_canvas = int(state["example_canvas"])
        self.history = state["history"]
        self.report = dict(state.get("report", {}))
        self._prep = rebuild_teacher(self.spec, self.ctx)
        net = copy.deepcopy(self._prep.sketch_branch()).cpu()
        self._apply_history(net, self.history)
        net.load_state_dict(state["state_dict"])
        self.net = net.to(self.device).eval()

    def _example(self, batch: int = 2) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.rand(batch, self.in_chans, self.example_canvas, self.example_canvas, generator=g)

    def _apply_history(self, net: nn.Module, history: list[list[Any]]) -> None:
        if history:
            dg = build_graph(net, self._example(), self.ctx.name)
            with graph_guard(self.ctx.name):
                dg.load_pruning_history(history)

    def extra_metrics(self, data: RunData, canvas: int | None) -> dict[str, float]:
        return dict(self.report)

    # -- training -------------------------------------------------------------------------------
    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        if teacher is None:
            raise SketchbenchError(f"{self.ctx.name} needs a trained teacher")
        self.spec = teacher_spec(teacher)
        self._prep = teacher
        self.in_chans = self.spec["in_chans"]
        self.example_canvas = self.ctx.preset.full_canvas
        net = copy.deepcopy(teacher.sketch_branch()).cpu().requires_grad_(True)
        key = stable_hash([PRUNE_VERSION, self.ctx.name, teacher_identity(teacher), data.fingerprint,
                           self.example_canvas, self.ctx.seed, self.ctx.preset.batch_size, self.ctx.preset.lr,
                           {k: self.p[k] for k in self.prune_keys}])
        cached = data.cache.load("pruned", key)  # the run's artifact store: memory, then disk
        if cached is not None:
            self._apply_history(net, cached["history"])
            net.load_state_dict(cached["state_dict"])
            self.net, self.history, self.report = net.to(self.device), cached["history"], dict(cached["report"])
        else:
            self.net = net.to(self.device)
            teacher_flops, _ = count_flops(teacher.sketch_branch(), teacher.sketch_input(self.example_canvas))
            target = self.p["flops_ratio"] * teacher_flops
            self.prune(data, target)
            flops, params = count_flops(self._net(), self.sketch_input(self.example_canvas))
            self.report = {"teacher_gflops_full": teacher_flops / 1e9, "pruned_gflops_full": flops / 1e9,
                           "flops_ratio": flops / teacher_flops, "target_flops_ratio": float(self.p["flops_ratio"])}
            # a copy: fine-tuning updates the live weights in place
            weights = {k: v.detach().cpu().clone() for k, v in self._net().state_dict().items()}
            cached = {"history": self.history, "state_dict": weights, "report": self.report}
            data.cache.save("pruned", key, cached)
        # fine-tune the pruned network with the triplet loss at the evaluated canvas
        trainer = self._trainer(data)
        self.fit(trainer, data, canvases, self.p["epochs"] or self.ctx.preset.epochs)

    def _trainer(self, data: RunData) -> Trainer:
        # a fresh optimiser: pruning replaces the parameters
        return Trainer(self._net().parameters(), lr=self.p["lr"] or self.ctx.preset.lr, device=self.device,
                       desc=self.ctx.name)

    def _flops(self) -> float:
        return count_flops(self._net(), self.sketch_input(self.example_canvas))[0]

    def _sample_images(self, data: RunData) -> list[torch.Tensor]:
        """Full-canvas training sketches and photos that drive the pruning criterion."""
        g = torch.Generator().manual_seed(self.ctx.seed)
        sketches = data.sketches("train", self.example_canvas)
        photos = data.photos("train")
        n = max(1, min(self.p["thinet_images"], len(sketches)))
        out = [sketches[torch.randperm(len(sketches), generator=g)[:n]]]
        out.append(photos[torch.randperm(len(photos), generator=g)[: max(1, min(n, len(photos)))]])
        return out

    def prune(self, data: RunData, target_flops: float) -> None:
        raise NotImplementedError


class BThiNet(_PrunedTeacher):
    description = "B-ThiNet: teacher pruned by ThiNet (greedy next-layer reconstruction), fine-tuned"
    params = {
        **PRUNE_COMMON,
        "flops_ratio": Param(0.2325, "FLOPs budget: fraction of the teacher's sketch-branch FLOPs at the full canvas "
                             "(paper: 9.342 / 40.18 G)", min=1e-3, max=1.0),
        "locations": Param(10, "sampled output locations per image and consumer layer (ThiNet: 10)", min=1, max=1000),
        "rescale": Param(True, "least-squares rescaling of the kept channels (ThiNet's ŵ)"),
        "layer_finetune_steps": Param(10, "triplet fine-tuning steps after each pruned layer", presets={"smoke": 1}, min=0, max=100000),
    }
    prune_keys = ("flops_ratio", "locations", "rescale", "layer_finetune_steps", "thinet_images", "margin", "lr",
                  "augment")

    def prune(self, data: RunData, target_flops: float) -> None:
        net = self._net()
        example = self._example().to(self.device)
        order = layer_order(net, example)
        final = order[-1]
        dg = build_graph(net, example, self.ctx.name)
        # (a layer torch-pruning could not trace, e.g. before an in-place op on the input side, is left alone)
        roots = [m for m in order if isinstance(m, nn.Conv2d) and m is not final and not is_depthwise(m)
                 and m in dg.module2node]
        images = self._sample_images(data)
        gen = torch.Generator().manual_seed(self.ctx.seed)
        budget = FlopsBudget(self._flops, target_flops)
        keep = min(1.0, math.sqrt(self.p["flops_ratio"]))
        for _ in range(8):  # passes over the layers
            done: set[nn.Module] = set()
            for root in roots:
                if budget.reached:
                    break
                if root in done or root.out_channels < 2:
                    continue
                with graph_guard(self.ctx.name):
                    group = dg.get_pruning_group(root, tp.prune_conv_out_channels, list(range(root.out_channels)))
                out_layers = [it.dep.target.module for it in group if dg.is_out_channel_pruning_fn(it.dep.handler)]
                done.update(out_layers)
                if final in out_layers:
                    continue
                n_remove = min(root.out_channels - 1, int(round(root.out_channels * (1.0 - keep))))
                if n_remove < 1:
                    continue
                if self._prune_layer(dg, root, group, n_remove, images, gen):
                    self.fit(self._trainer(data), data, (self.example_canvas,), 1,
                             max_steps=self.p["layer_finetune_steps"])
                    budget.changed()
            budget.measure()
            if budget.reached:
                break
            keep = 0.8  # later passes: another 20 % of each layer
        self.history = clean_history(dg.pruning_history())
        log.info("%s: pruned to %.4f GFLOPs (target %.4f; %d FLOPs counts)", self.ctx.name, budget.flops / 1e9,
                 target_flops / 1e9, budget.measured)

    def _prune_layer(self, dg: tp.DependencyGraph, root: nn.Conv2d, group: Any, n_remove: int,
                     images: list[torch.Tensor], gen: torch.Generator) -> bool:
        n_root = root.out_channels
        pos = {r: i for i, r in enumerate(group[0].root_idxs)}
        samplers = []
        for it in group:
            m = it.dep.target.module
            if not dg.is_in_channel_pruning_fn(it.dep.handler) or not isinstance(m, nn.Conv2d | nn.Linear):
                continue
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                continue  # depthwise / grouped convs pass channels through: their consumers count
            samplers.append(_ConsumerSampler(m, list(it.idxs), [pos[r] for r in it.root_idxs], n_root,
                                             self.p["locations"], gen))
        if not samplers:
            return False
        net = self._net()
        handles = [s.module.register_forward_hook(s) for s in samplers]
        was = net.training
        try:
            with torch.no_grad():
                net.eval()
                for imgs in images:
                    net(self.prepare_sketch(imgs))
        finally:
            net.train(was)
            for h in handles:
                h.remove()
        rows = []
        for s in samplers:
            x = s.samples()
            rms = x.sum(1).pow(2).mean().sqrt().clamp_min(1e-12)
            rows.append(x / rms)
        removed = thinet_greedy_selection(torch.cat(rows), n_remove)
        kept = sorted(set(range(n_root)) - set(removed))
        # least squares per consumer, on its own samples, before its inputs are renumbered
        scales = []
        if self.p["rescale"]:
            for x in rows:
                scales.append(thinet_least_squares(x[:, kept], x.sum(1)))
        root_removed = [group[0].root_idxs[i] for i in removed]
        old_in = [s.module.weight.shape[1] for s in samplers]
        with graph_guard(self.ctx.name):
            dg.get_pruning_group(root, tp.prune_conv_out_channels, root_removed).prune()
        if self.p["rescale"]:
            self._rescale(samplers, scales, kept, set(removed), old_in)
        return True

    @staticmethod
    def _rescale(samplers: list[_ConsumerSampler], scales: list[torch.Tensor], kept: list[int], removed: set[int],
                 old_in: list[int]) -> None:
        """Multiply each consumer's kept input columns by ThiNet's least-squares ŵ."""
        kept_pos = {r: i for i, r in enumerate(kept)}
        for s, w, n_in in zip(samplers, scales, old_in, strict=True):
            per_input = torch.ones(n_in)
            gone = torch.zeros(n_in, dtype=torch.bool)
            for f, r in zip(s.in_idxs.tolist(), s.root_pos.tolist(), strict=True):
                if r in removed:
                    gone[f] = True
                else:
                    per_input[f] = w[kept_pos[r]]
            factor = per_input[~gone]
            weight = s.module.weight
            if weight.shape[1] != factor.numel():
                continue  # an unexpected layout: skip the rescale rather than corrupt the layer
            with torch.no_grad():
                shape = (1, -1) + (1,) * (weight.dim() - 2)
                weight.mul_(factor.to(weight.device, weight.dtype).view(shape))


class BPrune(_PrunedTeacher):
    description = "B-Prune: teacher pruned by Molchanov'16 Taylor criterion, fine-tuned"
    params = {
        **PRUNE_COMMON,
        "flops_ratio": Param(0.2025, "FLOPs budget: fraction of the teacher's sketch-branch FLOPs at the full canvas "
                             "(paper: 8.138 / 40.18 G)", min=1e-3, max=1.0),
        "channels_per_step": Param(0.05, "fraction of the prunable channels removed per iteration", min=1e-3, max=0.5),
        "step_finetune_steps": Param(10, "fine-tuning steps per iteration (their gradients give the Taylor scores)",
                                     presets={"smoke": 1}, min=1, max=100000),
    }
    prune_keys = ("flops_ratio", "channels_per_step", "step_finetune_steps", "thinet_images", "margin", "lr", "augment")

    def prune(self, data: RunData, target_flops: float) -> None:
        net = self._net()
        example = self._example().to(self.device)
        final = layer_order(net, example)[-1]
        importance = MolchanovTaylorImportance()
        total_ratio = 0.9
        steps = max(1, math.ceil(total_ratio / self.p["channels_per_step"]))
        was = net.training
        net.eval()
        try:
            with graph_guard(self.ctx.name):
                pruner = tp.pruner.BasePruner(
                    net, example, importance=importance, global_pruning=True, pruning_ratio=total_ratio,
                    max_pruning_ratio=0.95, iterative_steps=steps, ignored_layers=[final],
                    root_module_types=[nn.Conv2d],
                )
        except SketchbenchError:
            raise
        except Exception as exc:
            raise SketchbenchError(f"{self.ctx.name}: torch-pruning cannot trace the teacher's sketch branch "
                                   f"({type(exc).__name__}: {exc})") from None
        finally:
            net.train(was)
        budget = FlopsBudget(self._flops, target_flops)
        for _ in range(steps):
            if budget.reached:
                break
            importance.reset()
            # fine-tune; the same minibatches' gradients give the Taylor scores (hooks only meanwhile:
            # FLOPs counting deep-copies the network, hooks included)
            importance.attach(net)
            try:
                self.fit(self._trainer(data), data, (self.example_canvas,), 1, max_steps=self.p["step_finetune_steps"])
            finally:
                importance.detach()
            # prune group by group and stop at the first one that meets the budget (no overshoot by a whole step)
            with graph_guard(self.ctx.name):
                for group in pruner.step(interactive=True):
                    group.prune()
                    budget.changed()
                    if budget.reached:
                        break
            budget.measure()
        self.history = clean_history(pruner.pruning_history())
        log.info("%s: pruned to %.4f GFLOPs (target %.4f; %d FLOPs counts)", self.ctx.name, budget.flops / 1e9,
                 target_flops / 1e9, budget.measured)
