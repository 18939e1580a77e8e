"""WDSR super-resolution networks, built from keyword arguments (no argparse namespaces).

One WDSR path (Yu et al., "Wide Activation for Efficient and Accurate Image Super-Resolution"),
as STDO and Dy-DCA use it: weight-normalised 3x3 convs, residual blocks with a wide ReLU
(``n_feats * expansion`` channels), a 5x5 skip conv from the input, PixelShuffle, and inputs
centred by subtracting 0.5. Inputs and outputs are float RGB in [0, 1], NCHW.

Initialisation (our choice, a parameter): the 5x5 skip conv starts as exact bicubic upsampling
(``skip_init="bicubic"``) and the tail conv's weights are scaled by ``tail_init_scale``, so an
untrained network already outputs bicubic and training only learns the residual detail. With
CPU-sized step budgets this matters: from the default init a WDSR needs ~1000 steps just to
catch up with bicubic. ``skip_init="default"`` restores PyTorch's init.

This module never imports TVM or ONNX Runtime; :func:`fold_weight_norm` makes a plain-conv copy
for export.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _conv(cin: int, cout: int, k: int, use_weight_norm: bool, init=None) -> nn.Module:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    if init is not None:
        with torch.no_grad():
            init(conv)
    return weight_norm(conv) if use_weight_norm else conv


def _cubic(t: float, a: float = -0.5) -> float:
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def bicubic_skip_weights(scale: int, n_colors: int = 3, k: int = 5) -> torch.Tensor:
    """Weights of a ``k x k`` conv that, followed by PixelShuffle(scale), is bicubic upsampling
    (Keys a=-0.5, half-pixel centres as PIL/``align_corners=False``)."""
    half = k // 2
    taps = []
    for i in range(scale):
        d = (i + 0.5) / scale - 0.5  # where HR sub-pixel i sits between LR pixels
        w = torch.tensor([_cubic(t - half - d) for t in range(k)], dtype=torch.float64)
        taps.append(w / w.sum())
    weight = torch.zeros(n_colors * scale * scale, n_colors, k, k, dtype=torch.float64)
    for c in range(n_colors):
        for i in range(scale):
            for j in range(scale):
                weight[c * scale * scale + i * scale + j, c] = torch.outer(taps[i], taps[j])
    return weight.float()


class WDSRBlock(nn.Module):
    def __init__(self, n_feats: int, expansion: int, use_weight_norm: bool = True, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            _conv(n_feats, n_feats * expansion, 3, use_weight_norm),
            nn.ReLU(inplace=True),
            _conv(n_feats * expansion, n_feats, 3, use_weight_norm),
        )
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.body(x) * self.res_scale


class WDSR(nn.Module):
    """One WDSR path. ``WDSR(scale=2, n_blocks=4, n_feats=32, expansion=2)`` is Dy-DCA's deep path;
    ``WDSR(scale=2, n_blocks=16, n_feats=32, expansion=4)`` is STDO's default (~1.19 M params)."""

    def __init__(self, scale: int = 2, n_blocks: int = 4, n_feats: int = 32, expansion: int = 2,
                 n_colors: int = 3, use_weight_norm: bool = True, res_scale: float = 1.0, input_mean: float = 0.5,
                 skip_init: str = "bicubic", tail_init_scale: float = 0.1):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if n_blocks < 0 or n_feats < 1 or expansion < 1:
            raise ValueError(f"bad WDSR size: n_blocks={n_blocks}, n_feats={n_feats}, expansion={expansion}")
        self.config = dict(scale=scale, n_blocks=n_blocks, n_feats=n_feats, expansion=expansion,
                           n_colors=n_colors, use_weight_norm=use_weight_norm, res_scale=res_scale,
                           input_mean=input_mean, skip_init=skip_init, tail_init_scale=tail_init_scale)
        self.input_mean = input_mean
        out = n_colors * scale * scale
        self.head = _conv(n_colors, n_feats, 3, use_weight_norm)
        self.body = nn.Sequential(*[WDSRBlock(n_feats, expansion, use_weight_norm, res_scale) for _ in range(n_blocks)])
        if skip_init not in ("bicubic", "default"):
            raise ValueError(f"skip_init must be 'bicubic' or 'default', got {skip_init!r}")

        def init_skip(conv):
            if skip_init == "bicubic":
                conv.weight.copy_(bicubic_skip_weights(scale, n_colors))
                conv.bias.zero_()

        self.tail = _conv(n_feats, out, 3, use_weight_norm, init=lambda c: c.weight.mul_(tail_init_scale))
        self.skip = _conv(n_colors, out, 5, use_weight_norm, init=init_skip)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        x = x - self.input_mean
        y = self.tail(self.body(self.head(x))) + self.skip(x)
        return self.shuffle(y) + self.input_mean


class DynamicWDSR(nn.Module):
    """Dy-DCA's one dynamic model: several WDSR paths, a patch routed to a path by its size.

    ``paths`` lists each path's size (``n_blocks``, ``n_feats``, ``expansion``); path 0 serves
    the smallest (hardest) patches and is the deepest by default. ``routing`` lists
    ``(patch_h, patch_w, path)`` in LR pixels, read from the patch manifest
    (:func:`dydca_lib.patches.routing_table`), never hard-coded. ``forward(x, path)`` runs one
    path on a batch of same-size patches: no routing or device logic inside a path, so each path
    exports on its own (``model.paths[i]``).
    """

    def __init__(self, scale: int = 2, paths: list[dict] | None = None, routing: list | None = None,
                 use_weight_norm: bool = True, **wdsr_kwargs):
        super().__init__()
        paths = [dict(p) for p in (paths or [{"n_blocks": 4}, {"n_blocks": 2}])]
        routing = [tuple(int(v) for v in r) for r in (routing or [])]
        for h, w, p in routing:
            if not 0 <= p < len(paths):
                raise ValueError(f"routing sends {w}x{h} patches to path {p}, but there are {len(paths)} paths")
        self.config = dict(scale=scale, paths=paths, routing=[list(r) for r in routing],
                           use_weight_norm=use_weight_norm, **wdsr_kwargs)
        defaults = dict(n_feats=32, expansion=2)
        self.paths = nn.ModuleList(WDSR(scale=scale, use_weight_norm=use_weight_norm, **{**defaults, **wdsr_kwargs, **p})
                                   for p in paths)
        self._route = {(h, w): p for h, w, p in routing}

    def route(self, patch_h: int, patch_w: int) -> int:
        """The path for an LR patch of ``patch_h x patch_w`` (the nominal size, before any context)."""
        try:
            return self._route[(int(patch_h), int(patch_w))]
        except KeyError:
            raise KeyError(f"no path for {patch_w}x{patch_h} patches; the model routes "
                           f"{sorted(self._route)}") from None

    def forward(self, x, path: int):
        return self.paths[path](x)


class CaFMWDSR(nn.Module):
    """CaFM (Liu et al., ICCV'21): one shared WDSR backbone and, per time chunk, a channel-wise
    modulation (scale and bias) of the output of every backbone conv (head, block convs, tail; the
    bicubic skip is shared as is). ``forward(x, path)`` runs chunk ``path``'s modulation.

    A modulation is affine per channel, so it folds into the conv it follows:
    :meth:`chunk_network` is a plain WDSR with chunk ``i``'s weights, the network a client runs
    for that chunk; switching chunks ships only ``2 x channels`` numbers per conv."""

    def __init__(self, scale: int = 2, n_chunks: int = 2, use_weight_norm: bool = True, **wdsr_kwargs):
        super().__init__()
        if n_chunks < 1:
            raise ValueError(f"CaFM needs at least one chunk, got n_chunks={n_chunks}")
        self.config = dict(scale=scale, n_chunks=n_chunks, use_weight_norm=use_weight_norm, **wdsr_kwargs)
        self.backbone = WDSR(scale=scale, use_weight_norm=use_weight_norm, **wdsr_kwargs)
        widths = [c.out_channels for c in self._modulated_convs()]
        self.mod_scale = nn.Parameter(torch.ones(n_chunks, sum(widths)))
        self.mod_bias = nn.Parameter(torch.zeros(n_chunks, sum(widths)))
        self._slices = [slice(a, a + w) for a, w in zip(np.cumsum([0] + widths[:-1]).tolist(), widths)]

    def _modulated_convs(self) -> list[nn.Conv2d]:
        b = self.backbone
        convs = [b.head]
        for block in b.body:
            convs += [block.body[0], block.body[2]]
        return convs + [b.tail]

    def _mod(self, y, path: int, i: int):
        sl = self._slices[i]  # in the activation's dtype: fp32 factors would promote bf16 activations to fp32
        a = self.mod_scale[path, sl].to(y.dtype).view(1, -1, 1, 1)
        return torch.addcmul(self.mod_bias[path, sl].to(y.dtype).view(1, -1, 1, 1), y, a)

    def forward(self, x, path: int):
        b = self.backbone
        x = x - b.input_mean
        h = self._mod(b.head(x), path, 0)
        for j, block in enumerate(b.body):
            r = torch.relu(self._mod(block.body[0](h), path, 1 + 2 * j))
            h = h + self._mod(block.body[2](r), path, 2 + 2 * j) * block.res_scale
        y = self._mod(b.tail(h), path, len(self._slices) - 1) + b.skip(x)
        return b.shuffle(y) + b.input_mean

    def modulation_parameters_per_chunk(self) -> int:
        return 2 * self.mod_scale.shape[1]

    @torch.no_grad()
    def chunk_network(self, chunk: int) -> WDSR:
        """Chunk ``chunk``'s network as a plain WDSR (weight norm and modulation folded in)."""
        plain = fold_weight_norm(self.backbone)
        b = plain
        convs = [b.head] + [c for block in b.body for c in (block.body[0], block.body[2])] + [b.tail]
        for conv, sl in zip(convs, self._slices):
            a, c = self.mod_scale[chunk, sl], self.mod_bias[chunk, sl]
            conv.weight.mul_(a.view(-1, 1, 1, 1))
            conv.bias.mul_(a).add_(c)
        return plain.train(False)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters as exported (weight-norm ``g`` and ``v`` counted once, as a weight)."""
    return sum(p.numel() for p in fold_weight_norm(model).parameters())


TRUNK = ("head", "body", "tail")  # a WDSR path's trunk: ~99 % of its FLOPs; the 5x5 skip conv is the rest


class ReducedTrunk(nn.Module):
    """A plain (folded) WDSR path whose trunk (head, body, tail) runs in ``dtype`` (bf16), channels-last
    (oneDNN's layout for bf16 kernels), while the skip conv, the sum and the output stay fp32.

    The skip carries the picture itself (values near 1.0, where bf16's 8-bit mantissa steps by
    1/256: a whole 8-bit level); the trunk adds the small residual detail, whose bf16 rounding is
    far below a level. ``wdsr`` is changed in place (its trunk converted)."""

    def __init__(self, wdsr: nn.Module, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.wdsr, self.dtype = wdsr, dtype
        for name in TRUNK:
            getattr(wdsr, name).to(dtype=dtype, memory_format=torch.channels_last)
        self.config = wdsr.config

    def forward(self, x):
        w = self.wdsr
        x = x - w.input_mean
        t = x.to(dtype=self.dtype, memory_format=torch.channels_last)
        y = w.tail(w.body(w.head(t))).float() + w.skip(x)
        return w.shuffle(y) + w.input_mean


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """A plain-conv copy of a model built from keyword arguments (``model.config``), same outputs.

    Rebuilds the model with ``use_weight_norm=False`` and loads each conv's effective weight
    (``g * v / ||v||``); the original is left untouched (``copy.deepcopy`` of parametrised
    modules is not reliable in torch).
    """
    plain = type(model)(**{**model.config, "use_weight_norm": False})
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if "parametrizations" not in k}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            state[f"{name}.weight"] = module.weight.detach().clone()
            state[f"{name}.bias"] = module.bias.detach().clone()
    plain.load_state_dict(state)
    return plain.train(model.training)


def unit_params(model: nn.Module) -> list[np.ndarray]:
    """A network's weights (weight norm folded) as float32 arrays in state-dict order: the order
    its compiled TVM functions take them in, and what a TVM client bundle ships."""
    return [t.detach().cpu().numpy().astype(np.float32) for t in fold_weight_norm(model).state_dict().values()]


MODEL_CLASSES = {"WDSR": WDSR, "DynamicWDSR": DynamicWDSR, "CaFMWDSR": CaFMWDSR}


def model_record(model: nn.Module) -> dict:
    """What a checkpoint stores to rebuild ``model``: its class name and keyword arguments."""
    return {"class": type(model).__name__, **model.config}


def build_model(record: dict) -> nn.Module:
    """Rebuild a model from :func:`model_record` (a bare WDSR config is accepted too)."""
    record = dict(record)
    cls = MODEL_CLASSES[record.pop("class", "WDSR")]
    return cls(**record)


def to_tensor(img) -> torch.Tensor:
    """uint8 HWC (or NHWC) array -> float NCHW in [0, 1]."""
    t = torch.from_numpy(img).float().div_(255.0)
    return t.permute(2, 0, 1).unsqueeze(0) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def to_uint8(t: torch.Tensor):
    """float NCHW in [0, 1] -> uint8 NHWC array, rounded as a client would display it."""
    return t.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def super_resolve(model: nn.Module, lr: np.ndarray) -> np.ndarray:
    """Upscale one uint8 RGB LR frame (HWC) with ``model``; returns the uint8 SR frame."""
    model.eval()
    return to_uint8(model(to_tensor(lr)))[0]


def wdsr_flops(config: dict, h: int, w: int) -> float:
    """FLOPs (2 x multiply-adds) of one WDSR path on one ``h x w`` LR input: its convolutions
    (head, blocks, tail, 5x5 skip); biases, ReLU, additions and PixelShuffle are left out."""
    c, f, e = config.get("n_colors", 3), config["n_feats"], config["expansion"]
    s, b = config["scale"], config["n_blocks"]
    out = c * s * s
    macs_per_px = 9 * c * f + b * (9 * f * f * e * 2) + 9 * f * out + 25 * c * out
    return 2.0 * macs_per_px * h * w
