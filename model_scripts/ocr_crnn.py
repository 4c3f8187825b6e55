"""CRNN text-line recognizer: conv features (height collapsed to 1) -> 2-layer BiLSTM -> CTC head.

images [B, C, image_height, W] -> logits [B, T, num_classes] with T = W // 4 (two 2x2 pools
halve the width; later pools only halve the height). Width is dynamic. Class index
``blank_index`` (pipeline option, usually 0) is the CTC blank.
"""
import torch
from torch import nn


def _conv_block(in_ch: int, out_ch: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=pool, stride=pool),
    )


class CRNN(nn.Module):
    WIDTH_DOWNSAMPLE = 4

    def __init__(
        self,
        num_classes: int,
        image_height: int = 32,
        hidden_size: int = 128,
        channels: tuple = (32, 64, 128, 128),
        in_channels: int = 1,
        lstm_layers: int = 2,
    ):
        super().__init__()
        if len(channels) < 2:
            raise ValueError("channels needs at least two entries (the two width-halving stages)")
        height_left = image_height // (2 ** len(channels))
        if height_left < 1 or image_height % (2 ** len(channels)):
            raise ValueError(
                f"image_height {image_height} must be a multiple of {2 ** len(channels)} for {len(channels)} conv stages"
            )
        blocks, prev = [], in_channels
        for i, ch in enumerate(channels):
            blocks.append(_conv_block(prev, ch, (2, 2) if i < 2 else (2, 1)))
            prev = ch
        self.features = nn.Sequential(*blocks)
        # A full-height kernel collapses what is left of the height without a dynamic-size pool.
        self.collapse = nn.Sequential(
            nn.Conv2d(prev, prev, kernel_size=(height_left, 1), bias=False),
            nn.BatchNorm2d(prev),
            nn.ReLU(inplace=True),
        )
        self.rnn = nn.LSTM(prev, hidden_size, num_layers=lstm_layers, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.collapse(self.features(images))  # [B, C, 1, T]
        sequence = features.squeeze(2).permute(0, 2, 1)  # [B, T, C]
        sequence, _ = self.rnn(sequence)
        return self.head(sequence)
