"""YOLOX (CSPDarknet + PAFPN + decoupled head) with official Megvii YOLOX parameter names.

Loaded by path by trt-convert. Parameter names match the official repository
(`backbone.backbone.stem.conv.conv.weight`, `head.cls_preds.0.weight`, ...), so the
`model` entry of an official checkpoint loads with strict key matching for any class
count, given the right `variant` and `num_classes`.

Input: float32 [B, 3, H, W], BGR, pixel values 0..255, letterboxed with pad value 114.
This is the preprocessing of official YOLOX since 0.1.1 ("legacy" mean/std normalisation
off); checkpoints trained with the legacy normalisation are not supported here.
H and W must be multiples of 32.

Output (eval mode): float32 [B, N, 5 + num_classes] with N = sum over strides 8/16/32 of
(H/s)*(W/s); per anchor: cx, cy, w, h in input pixels, objectness (sigmoid), class scores
(sigmoid), i.e. the official eval output with decode_in_inference=True.
"""

from __future__ import annotations

import torch
from torch import nn

try:  # clean one-line error in trt-convert; plain ValueError when used standalone
    from trt_converters.errors import UserError as _ConfigError
except ImportError:  # pragma: no cover
    _ConfigError = ValueError

# variant: (depth multiplier, width multiplier, depthwise convolutions)
VARIANTS = {
    "nano": (0.33, 0.25, True),
    "tiny": (0.33, 0.375, False),
    "s": (0.33, 0.50, False),
    "m": (0.67, 0.75, False),
    "l": (1.0, 1.0, False),
    "x": (1.33, 1.25, False),
}

STRIDES = (8, 16, 32)


class BaseConv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU, 'same' padding."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, ksize, stride, (ksize - 1) // 2, groups=groups, bias=False)
        # Official YOLOX training sets eps=1e-3 on every BatchNorm; eval numerics depend on it.
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise conv followed by a pointwise conv (used by YOLOX-Nano)."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int, stride: int = 1):
        super().__init__()
        self.dconv = BaseConv(in_ch, in_ch, ksize, stride, groups=in_ch)
        self.pconv = BaseConv(in_ch, out_ch, 1, 1)

    def forward(self, x):
        return self.pconv(self.dconv(x))


def conv_type(depthwise: bool):
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, shortcut: bool, depthwise: bool):
        super().__init__()
        hidden = out_ch  # expansion 1.0 inside CSP layers
        self.conv1 = BaseConv(in_ch, hidden, 1, 1)
        self.conv2 = conv_type(depthwise)(hidden, out_ch, 3, 1)
        self.use_add = shortcut and in_ch == out_ch

    def forward(self, x):
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, n: int, shortcut: bool = True, depthwise: bool = False):
        super().__init__()
        hidden = int(out_ch * 0.5)
        self.conv1 = BaseConv(in_ch, hidden, 1, 1)
        self.conv2 = BaseConv(in_ch, hidden, 1, 1)
        self.conv3 = BaseConv(2 * hidden, out_ch, 1, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, depthwise) for _ in range(n)])

    def forward(self, x):
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_sizes=(5, 9, 13)):
        super().__init__()
        hidden = in_ch // 2
        self.conv1 = BaseConv(in_ch, hidden, 1, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes])
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_ch, 1, 1)

    def forward(self, x):
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth (2x2 patches into channels) followed by a conv."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int = 3):
        super().__init__()
        self.conv = BaseConv(in_ch * 4, out_ch, ksize, 1)

    def forward(self, x):
        top_left = x[..., ::2, ::2]
        top_right = x[..., ::2, 1::2]
        bottom_left = x[..., 1::2, ::2]
        bottom_right = x[..., 1::2, 1::2]
        # channel order of the official model: TL, BL, TR, BR
        return self.conv(torch.cat((top_left, bottom_left, top_right, bottom_right), dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool):
        super().__init__()
        Conv = conv_type(depthwise)
        base = int(width * 64)
        n = max(round(depth * 3), 1)
        self.stem = Focus(3, base, ksize=3)
        self.dark2 = nn.Sequential(Conv(base, base * 2, 3, 2), CSPLayer(base * 2, base * 2, n, depthwise=depthwise))
        self.dark3 = nn.Sequential(Conv(base * 2, base * 4, 3, 2), CSPLayer(base * 4, base * 4, n * 3, depthwise=depthwise))
        self.dark4 = nn.Sequential(Conv(base * 4, base * 8, 3, 2), CSPLayer(base * 8, base * 8, n * 3, depthwise=depthwise))
        self.dark5 = nn.Sequential(
            Conv(base * 8, base * 16, 3, 2),
            SPPBottleneck(base * 16, base * 16),
            CSPLayer(base * 16, base * 16, n, shortcut=False, depthwise=depthwise),
        )

    def forward(self, x):
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        return c3, c4, c5


class YOLOPAFPN(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool, in_channels=(256, 512, 1024)):
        super().__init__()
        Conv = conv_type(depthwise)
        c0, c1, c2 = (int(c * width) for c in in_channels)
        n = round(3 * depth)
        self.backbone = CSPDarknet(depth, width, depthwise)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c2, c1, 1, 1)
        self.C3_p4 = CSPLayer(2 * c1, c1, n, False, depthwise)
        self.reduce_conv1 = BaseConv(c1, c0, 1, 1)
        self.C3_p3 = CSPLayer(2 * c0, c0, n, False, depthwise)
        self.bu_conv2 = Conv(c0, c0, 3, 2)
        self.C3_n3 = CSPLayer(2 * c0, c1, n, False, depthwise)
        self.bu_conv1 = Conv(c1, c1, 3, 2)
        self.C3_n4 = CSPLayer(2 * c1, c2, n, False, depthwise)

    def forward(self, x):
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


class YOLOXHead(nn.Module):
    def __init__(self, num_classes: int, width: float, depthwise: bool, in_channels=(256, 512, 1024)):
        super().__init__()
        Conv = conv_type(depthwise)
        hidden = int(256 * width)
        self.num_classes = num_classes
        self.stems = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.obj_preds = nn.ModuleList()
        for ch in in_channels:
            self.stems.append(BaseConv(int(ch * width), hidden, 1, 1))
            self.cls_convs.append(nn.Sequential(Conv(hidden, hidden, 3, 1), Conv(hidden, hidden, 3, 1)))
            self.reg_convs.append(nn.Sequential(Conv(hidden, hidden, 3, 1), Conv(hidden, hidden, 3, 1)))
            self.cls_preds.append(nn.Conv2d(hidden, num_classes, 1))
            self.reg_preds.append(nn.Conv2d(hidden, 4, 1))
            self.obj_preds.append(nn.Conv2d(hidden, 1, 1))

    def forward(self, features):
        levels = []
        for k, (x, stride) in enumerate(zip(features, STRIDES)):
            x = self.stems[k](x)
            cls_out = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            reg_out = self.reg_preds[k](reg_feat)
            obj_out = self.obj_preds[k](reg_feat)
            levels.append(self._decode_level(reg_out, obj_out, cls_out, stride))
        return torch.cat(levels, dim=1)

    @staticmethod
    def _decode_level(reg, obj, cls, stride: int):
        """[B, C, h, w] maps of one stride -> [B, h*w, 5 + classes] in input pixels."""
        h, w = reg.shape[-2:]
        ys = torch.arange(h, dtype=reg.dtype, device=reg.device)
        xs = torch.arange(w, dtype=reg.dtype, device=reg.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack((grid_x, grid_y), dim=-1).reshape(1, -1, 2)
        reg = reg.flatten(2).permute(0, 2, 1)
        xy = (reg[..., :2] + grid) * stride
        wh = torch.exp(reg[..., 2:4]) * stride
        obj = obj.flatten(2).permute(0, 2, 1).sigmoid()
        cls = cls.flatten(2).permute(0, 2, 1).sigmoid()
        return torch.cat((xy, wh, obj, cls), dim=-1)


class YOLOX(nn.Module):
    """YOLOX detector; `variant` picks depth/width (nano, tiny, s, m, l, x)."""

    def __init__(self, variant: str = "s", num_classes: int = 80):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown YOLOX variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        depth, width, depthwise = VARIANTS[variant]
        self.variant = variant
        self.num_classes = int(num_classes)
        self.backbone = YOLOPAFPN(depth, width, depthwise)
        self.head = YOLOXHead(self.num_classes, width, depthwise)

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        """Each detection row: box (4), objectness, one score per class."""
        return {"output_widths": [5 + int(kwargs.get("num_classes", 80))]}

    def forward(self, images):
        return self.head(self.backbone(images))

    def adapt_state_dict(self, state_dict: dict) -> dict:
        """Name a variant or class-count mismatch plainly; the strict load reports anything else."""
        stem = state_dict.get("backbone.backbone.stem.conv.conv.weight")
        cls_weight = state_dict.get("head.cls_preds.0.weight")
        if stem is None or cls_weight is None:
            return state_dict
        expected_stem = tuple(self.backbone.backbone.stem.conv.conv.weight.shape)
        depthwise = any(".dconv." in key for key in state_dict)
        detected = checkpoint_variant(int(stem.shape[0]), depthwise)
        if tuple(stem.shape) != expected_stem or detected not in (None, self.variant):
            found = f"YOLOX-{detected}" if detected else "an unknown YOLOX width"
            raise _ConfigError(
                f"checkpoint is {found} (stem conv {list(stem.shape)}, depthwise={depthwise}) but variant="
                f"{self.variant!r} expects stem conv {list(expected_stem)}; set model_kwargs variant: "
                f"{detected or '<matching variant>'}"
            )
        if cls_weight.shape[0] != self.num_classes:
            raise _ConfigError(
                f"checkpoint has {cls_weight.shape[0]} classes but num_classes={self.num_classes}; "
                f"set model_kwargs num_classes: {cls_weight.shape[0]} (or --model-kwargs "
                f"'{{\"num_classes\": {cls_weight.shape[0]}}}')"
            )
        return state_dict


def checkpoint_variant(stem_channels: int, depthwise: bool) -> str | None:
    """The variant whose stem width and conv type match; widths are unique per variant."""
    for name, (_, width, is_depthwise) in VARIANTS.items():
        if int(width * 64) == stem_channels and is_depthwise == depthwise:
            return name
    return None
