"""StyleVAE: the VAE core of "StyleMeUp: Towards Style-Agnostic Sketch-Based Image Retrieval"
(Sain, Bhunia, Yang, Xiang, Song, CVPR 2021), after the released code (aneeshan95/StyleMeUp:
``Code/Networks.py``, ``Code/main.py``).

Network (shared by sketches and photos):

- encoder: 5 down-blocks ``Conv 4×4 s2 p1`` (+ InstanceNorm, not in the first) + LeakyReLU(0.2),
  channels 3→32→64→128→256→256; adaptive average pooling to a ``grid``×``grid`` map (our addition,
  so every canvas works: at 256 px the map is already 8×8 and the pooling is the identity for the
  default grid 8); flatten → ``Linear(256·grid², 512)`` → Dropout(0.5);
- heads from the 512-d vector: ``invar`` 512→128, the semantic code, L2-normalised and **used for
  retrieval**; ``fc_mu`` / ``fc_logvar`` 512→128, the style posterior N(μ, exp(0.5·logvar));
- decoder (training only): ``Linear(128, 256·g·g)`` → Dropout(0.5) → 4 up-blocks
  ``ConvTranspose 4×4 s2`` + InstanceNorm + ReLU (256→256→128→64→32) → ``ConvTranspose`` to 3
  channels + Tanh, at ``recon_size`` (g = recon_size / 32; the released code decodes at 256). It
  decodes ``z + inv`` (a sum).

Losses (weights 1, as released), on a task (positive photo, negative photo, two sketches s1, s2):
KL(q(z|x) ‖ N(0, I)) averaged over the four images; cross-style reconstruction
``dec(inv(s1) + z(s2)) → s2`` and vice versa; cross-domain reconstruction (each sketch's
reconstruction vs the photo, the photo's reconstruction vs each sketch); triplet losses (margin 0.2)
on the ``inv`` codes and on ``z + inv``. Self-reconstruction is computed but, as in the released
code, weighted by ``self_rec_weight`` = 0 by default.

Meta-learning (first-order MAML with a MetaReg-style learned regulariser, as released with
``learn2learn.MAML(first_order=True)``): a task is one training photo with its sketches as "styles".
The inner step (lr ``fast_lr``) uses two styles and the regulariser ``R_φ = Σ φ ⊙ |[W_inv | b_inv]|``
(φ a 128×513 parameter matrix); the outer loss uses a kept style and the held-out one, without the
regulariser. θ gets the first-order meta-gradient (∂L_out/∂θ' applied to θ). φ gets the *exact*
gradient of the outer loss through the inner step: ``θ'_inv = θ_inv − α(∇L_in + φ ⊙ sign(W_inv))``, so
``∂L_out/∂φ = −α ∇_{θ'}L_out ⊙ sign(W_inv)`` (no second-order term is needed because R's gradient is
linear in φ). In the released first-order code φ receives no gradient at all; ours does, which is
what the paper describes. Gradients are averaged over ``meta_batch`` tasks; Adam (lr 1e-4, as
released, whatever the preset: at the smoke preset's 1e-3 the inner SGD step diverges within a few
updates) updates θ and φ. φ is clamped at ≥ 0 after each step (a negative weight would reward
large semantic weights; our choice).

Simplifications and interpretations (also in docs/methods/stylevae.md):

- no feature-transformation (FT) layers: they are in the paper but absent from the released code;
- tasks are photos with ≥ 2 training sketches (released: exactly the photos with sketches _1, _2, _3).
  With ≥ 3 sketches, three random ones are the two inner styles and the held-out style; with 2, the
  inner step uses the one kept sketch as both styles; a photo with one sketch (QMUL-V1) gives a task
  whose held-out style equals its training style (the meta step degenerates to a look-ahead step);
- encoder inputs are ImageNet-normalised like every sketchbench method (released: mean = std = 0.5);
  reconstruction targets are the images resized to ``recon_size`` in [-1, 1] (sketches: grey
  repeated to 3 channels);
- ``grid`` is 8 by default (the released 8×8 map at 256 px) but 2 at the smoke and 4 at the cpu
  preset: their canvases (≤ 96 px) end at 1×1 to 3×3 maps, and pooling those *up* to 8×8 only
  replicates values (64 copies at 32 px), which multiplies the effective step of the big Linear and
  made the inner step diverge; it also costs 8.4 M weights for nothing at those sizes;
- InstanceNorm is skipped on a 1×1 map (a 32 px canvas reaches 1×1 at the fifth block, where
  instance statistics of one value would zero the features); the skipped norm is not counted;
- one task = one photo (batch 1, as released); the meta-batch is ``meta_batch`` tasks (released 12);
  the released code never resets gradients between meta-batches within an epoch (a bug we do not copy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from sketchbench import Method, MethodContext, Param, RunData, SketchbenchError, TrainingError
from sketchbench.training import load_weights, sample_negatives, to_input, triplet_loss

CODE = 128
HIDDEN = 512
CHANNELS = (3, 32, 64, 128, 256, 256)


class InstanceNormUnlessPoint(nn.Module):
    """InstanceNorm2d, skipped on a 1×1 map (whose single value it would set to 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.shape[-1] * x.shape[-2] == 1 else self.norm(x)


def down_block(cin: int, cout: int, normalise: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1)]
    if normalise:
        layers.append(InstanceNormUnlessPoint(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout), nn.ReLU(inplace=True))


class EncoderTrunk(nn.Module):
    """The shared encoder up to the 512-d vector (dropout included)."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(down_block(CHANNELS[i], CHANNELS[i + 1], normalise=i > 0) for i in range(len(CHANNELS) - 1))
        )
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.linear = nn.Linear(CHANNELS[-1] * grid * grid, HIDDEN)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear(torch.flatten(self.pool(self.blocks(x)), 1)))


class Decoder(nn.Module):
    def __init__(self, recon_size: int) -> None:
        super().__init__()
        self.start = recon_size // 32
        self.linear = nn.Linear(CODE, 256 * self.start * self.start)
        self.dropout = nn.Dropout(0.5)
        self.ups = nn.Sequential(up_block(256, 256), up_block(256, 128), up_block(128, 64), up_block(64, 32))
        self.final = nn.Sequential(nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Tanh())

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.linear(code).view(-1, 256, self.start, self.start))
        return self.final(self.ups(x))


class SemanticBranch(nn.Module):
    """encoder trunk → ``invar`` → L2: the retrieval path (and what FLOPs/params count)."""

    def __init__(self, trunk: EncoderTrunk, invar: nn.Linear) -> None:
        super().__init__()
        self.trunk, self.invar = trunk, invar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.invar(self.trunk(x)), dim=-1)


class StyleVAENet(nn.Module):
    """Encoder, heads and decoder; ``forward`` returns the released ``train()`` losses of one task."""

    def __init__(self, grid: int, recon_size: int, margin: float, self_rec_weight: float) -> None:
        super().__init__()
        self.trunk = EncoderTrunk(grid)
        self.invar = nn.Linear(HIDDEN, CODE)
        self.fc_mu = nn.Linear(HIDDEN, CODE)
        self.fc_logvar = nn.Linear(HIDDEN, CODE)
        self.decoder = Decoder(recon_size)
        self.margin = margin
        self.self_rec_weight = self_rec_weight

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(μ, log σ², L2-normalised semantic code)."""
        h = self.trunk(x)
        return self.fc_mu(h), self.fc_logvar(h), F.normalize(self.invar(h), dim=-1)

    def forward(self, sketches: torch.Tensor, photos: torch.Tensor, sketch_targets: torch.Tensor,
                photo_targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``sketches`` = inputs of (s1, s2), ``photos`` = inputs of (positive, negative); targets in
        [-1, 1] at the reconstruction size."""
        mu_s, lv_s, inv_s = self.encode(sketches)
        mu_p, lv_p, inv_p = self.encode(photos)
        z_s = mu_s + torch.exp(0.5 * lv_s) * torch.randn_like(mu_s)  # reparameterised samples
        z_p = mu_p + torch.exp(0.5 * lv_p) * torch.randn_like(mu_p)
        mu, lv = torch.cat([mu_p, mu_s]), torch.cat([lv_p, lv_s])
        kl = (0.5 * (lv.exp() + mu.pow(2) - 1.0 - lv)).mean()  # KL(N(μ, σ²) ‖ N(0, 1)), mean over images and dims
        codes = torch.cat([z_p + inv_p, z_s + inv_s, (inv_s[0] + z_s[1])[None], (inv_s[1] + z_s[0])[None]])
        rec = self.decoder(codes)
        rec_pos, rec_neg, rec_s1, rec_s2, rec_12, rec_21 = rec.unbind(0)
        pos, neg = photo_targets.unbind(0)
        s1, s2 = sketch_targets.unbind(0)
        self_rec = (F.mse_loss(rec_pos, pos) + F.mse_loss(rec_neg, neg) + F.mse_loss(rec_s1, s1)
                    + F.mse_loss(rec_s2, s2)) / 4
        cross_style = (F.mse_loss(rec_12, s2) + F.mse_loss(rec_21, s1)) / 2
        cross_domain = (F.mse_loss(rec_s1, pos) + F.mse_loss(rec_s2, pos) + F.mse_loss(rec_pos, s2)
                        + F.mse_loss(rec_pos, s1)) / 4
        trip = triplet_loss(inv_s, inv_p[:1].expand_as(inv_s), inv_p[1:].expand_as(inv_s), self.margin)
        full_s, full_p = z_s + inv_s, z_p + inv_p
        trip = trip + triplet_loss(full_s, full_p[:1].expand_as(full_s), full_p[1:].expand_as(full_s), self.margin)
        total = kl + cross_style + cross_domain + trip + self.self_rec_weight * self_rec
        return {"kl": kl, "self_rec": self_rec, "cross_style": cross_style, "cross_domain": cross_domain,
                "triplet": trip, "total": total}


class StyleVAE(Method):
    kind = "teacher"
    description = "StyleVAE / StyleMeUp (Sain et al. CVPR'21): semantic/style VAE, first-order meta-learning"
    multi_canvas = False
    params = {
        "grid": Param(8, "encoder map pooled to grid x grid before Linear(256*grid^2, 512) (8 = released at 256 px)",
                      presets={"smoke": 2, "cpu": 4}, min=1, max=32),
        "recon_size": Param(256, "decoder output size, a multiple of 32 (released: 256)",
                            presets={"smoke": 32, "cpu": 64}, min=32, max=1024),
        "margin": Param(0.2, "triplet margin (released nn.TripletMarginLoss(margin=0.2))", min=0.0, max=4.0),
        "self_rec_weight": Param(0.0, "weight of the self-reconstruction loss (released: computed, not added)", min=0.0, max=100.0),
        "meta": Param(True, "first-order meta-learning with the learned regulariser (False: plain VAE training)"),
        "fast_lr": Param(0.005, "inner-step learning rate (released MAML fast_lr)", min=0.0, max=1.0),
        "meta_batch": Param(12, "tasks per outer update (released: 12)", presets={"smoke": 4}, min=1, max=1024),
        "lr": Param(1e-4, "outer Adam learning rate of the model and the regulariser (released meta_lr 1e-4; "
                          "the inner step diverges at 1e-3)", min=1e-12, max=10.0, zero_is_preset=True),
        "epochs": Param(0, "epochs over the tasks", min=1, max=10000, zero_is_preset=True),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        # the released encoder is trained from scratch: it has no backbone a weight source fills
        r = self.p["recon_size"]
        if r < 32 or r % 32:
            raise SketchbenchError(f"--param recon_size={r}: must be a positive multiple of 32")
        if self.p["grid"] < 1:
            raise SketchbenchError(f"--param grid={self.p['grid']}: must be at least 1")
        self.vae = StyleVAENet(self.p["grid"], r, self.p["margin"], self.p["self_rec_weight"])
        # the learned regulariser on [W_inv | b_inv] (released: torch.rand(128, 513))
        self.reg = nn.Parameter(torch.rand(CODE, HIDDEN + 1))
        self.net = nn.Module()
        self.net.vae = self.vae
        self.net.register_parameter("reg", self.reg)
        if ctx.weights is not None:
            load_weights(self.net, ctx.weights, partial=ctx.partial_weights)
        self.net.to(self.device)
        self.semantic = SemanticBranch(self.vae.trunk, self.vae.invar)

    # -- interface ---------------------------------------------------------------------------
    def modules(self) -> nn.Module:
        return self.net

    def sketch_branch(self) -> nn.Module:
        return self.semantic

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.semantic(to_input(images, 3, self.device)).float()

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self.semantic(to_input(images, 3, self.device)).float()

    # -- losses ------------------------------------------------------------------------------
    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images → 3-channel reconstruction targets in [-1, 1] at ``recon_size``."""
        x = images if images.dim() == 4 else images.unsqueeze(1)
        x = x.to(self.device).float()
        r = self.p["recon_size"]
        if x.shape[-1] > r:
            x = F.interpolate(x, size=(r, r), mode="area")
        elif x.shape[-1] < r:
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        return (x / 127.5 - 1.0).expand(-1, 3, -1, -1)

    def task_inputs(self, s1: torch.Tensor, s2: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple:
        """uint8 (c, c) sketches and (3, S, S) photos → the arguments of :meth:`StyleVAENet.forward`."""
        sk = torch.stack([s1, s2])
        ph = torch.stack([pos, neg])
        return to_input(sk, 3, self.device), to_input(ph, 3, self.device), self.targets(sk), self.targets(ph)

    def vae_losses(self, s1: torch.Tensor, s2: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """The released ``train()`` losses of one task (without the regulariser)."""
        return self.vae(*self.task_inputs(s1, s2, pos, neg))

    def regulariser(self) -> torch.Tensor:
        """``Σ φ ⊙ |[W_inv | b_inv]|``."""
        inv = self.vae.invar
        return (self.reg * torch.cat([inv.weight, inv.bias[:, None]], 1).abs()).sum()

    # -- training ----------------------------------------------------------------------------
    def tasks(self, data: RunData) -> list[list[int]]:
        """Sketch indices grouped by training photo (each group is one task)."""
        groups: dict[int, list[int]] = {}
        for i, photo in enumerate(data.pairs("train").tolist()):
            groups.setdefault(photo, []).append(i)
        return [groups[k] for k in sorted(groups)]

    @staticmethod
    def pick_styles(group: list[int], rng: np.random.Generator) -> tuple[int, int, int]:
        """(inner style a, inner style b, held-out style h) of one task."""
        if len(group) >= 3:
            a, b, h = rng.choice(group, 3, replace=False).tolist()
        elif len(group) == 2:
            b, h = rng.permutation(group).tolist()
            a = b
        else:
            a = b = h = group[0]
        return int(a), int(b), int(h)

    def meta_step(self, args_in: tuple, args_out: tuple, scale: float) -> tuple[float, float]:
        """One task: inner step on ``args_in`` with the regulariser, outer loss on ``args_out``;
        adds ``scale`` × the first-order meta-gradient to ``.grad`` of θ and the exact one to φ."""
        names, params = zip(*self.vae.named_parameters())
        inner = self.vae(*args_in)["total"]
        grads = torch.autograd.grad(inner, params, allow_unused=True)
        alpha = self.p["fast_lr"]
        inv = self.vae.invar
        sign = torch.cat([inv.weight, inv.bias[:, None]], 1).detach().sign()
        leaves = [(p.detach() - alpha * (g if g is not None else 0.0)).requires_grad_() for p, g in zip(params, grads)]
        fast = dict(zip(names, leaves))
        shift = -alpha * self.reg * sign  # the regulariser's part of the inner step, differentiable in φ
        fast["invar.weight"] = fast["invar.weight"] + shift[:, :-1]
        fast["invar.bias"] = fast["invar.bias"] + shift[:, -1]
        outer = functional_call(self.vae, fast, args_out)["total"]
        meta_grads = torch.autograd.grad(outer, [*leaves, self.reg], allow_unused=True)
        for p, g in zip([*params, self.reg], meta_grads):
            if g is None:
                continue
            g = g * scale
            p.grad = g if p.grad is None else p.grad + g
        with torch.no_grad():
            inner_total = float(inner.detach()) + float(self.regulariser())
        return inner_total, float(outer.detach())

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        canvas = int(canvases[0])
        preset = self.ctx.preset
        epochs = self.p["epochs"] or preset.epochs
        lr = self.p["lr"] or preset.lr
        sketches, photos = data.sketches("train", canvas), data.photos("train")
        pairs = data.pairs("train").numpy()
        hard = data.split("train").hard_negatives
        groups = self.tasks(data)
        if len(groups) < 2:
            raise SketchbenchError("stylevae needs at least two training photos")
        multi = sum(len(g) >= 2 for g in groups)
        if self.p["meta"] and multi == 0:
            self.ctx.log.warning("%s: no training photo has two sketches; meta-tasks use one style each",
                                 self.ctx.name)
        rng = np.random.default_rng(self.ctx.seed)
        meta_batch = max(1, self.p["meta_batch"])
        optimizer = torch.optim.Adam([*self.vae.parameters(), self.reg], lr=lr)
        steps = epochs * ((len(groups) + meta_batch - 1) // meta_batch)
        bar = tqdm(total=steps, desc=f"{self.ctx.name} meta" if self.p["meta"] else self.ctx.name, leave=False, unit="step")
        self.net.train()
        step = 0
        try:
            for epoch in range(epochs):
                order = rng.permutation(len(groups))
                for start in range(0, len(order), meta_batch):
                    chunk = order[start : start + meta_batch]
                    optimizer.zero_grad(set_to_none=True)
                    outer_sum = 0.0
                    for t in chunk:
                        a, b, h = self.pick_styles(groups[t], rng)
                        pos = int(pairs[a])
                        neg = int(sample_negatives(np.array([pos]), photos.shape[0], rng, hard, np.array([a]))[0])
                        args_in = self.task_inputs(sketches[a], sketches[b], photos[pos], photos[neg])
                        if self.p["meta"]:
                            # meta-test on a kept style and the held-out one (released: sketch2, sketch3)
                            args_out = self.task_inputs(sketches[b], sketches[h], photos[pos], photos[neg])
                            _, outer = self.meta_step(args_in, args_out, 1.0 / len(chunk))
                        else:
                            loss = self.vae(*args_in)["total"] / len(chunk)
                            loss.backward()
                            outer = float(loss) * len(chunk)
                        outer_sum += outer
                    value = outer_sum / len(chunk)
                    if not np.isfinite(value):
                        raise TrainingError(f"{self.ctx.name}: the loss became {value} at epoch {epoch + 1}, "
                                            f"step {step + 1} (try a lower learning rate: --param lr=...)")
                    optimizer.step()
                    with torch.no_grad():
                        self.reg.clamp_(min=0.0)
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        finally:
            bar.close()
        self.net.eval()


__all__ = ["SemanticBranch", "StyleVAE", "StyleVAENet"]
