"""The student as a plain module for serving without detectron2 (TorchScript, ONNX)."""

import torch
from torch import nn


class ExportableStudent(nn.Module):
    """A trained :class:`StudentClassifier` as one tensor-in, tensor-out module: uint8 images
    [B, C, H, W] (one size per batch, channels in the config's ``INPUT.FORMAT``) -> class
    scores [B, K] in (0, 1), as the student's inference computes them (normalized, resized to
    its input size, backbone, head, linear, sigmoid)."""

    def __init__(self, student):
        super().__init__()
        self.student = student.eval()

    def forward(self, images):
        x = (images.float() - self.student.pixel_mean) / self.student.pixel_std
        if self.student.input_size:
            x = self.student.resize(x)
        return torch.sigmoid(self.student.image_logits(x))
