"""One training step, timed, in a process of its own (``dev/benchmark_training.py --parts
busy_machine`` runs it under each OpenMP setting, which must be in the environment before torch
loads): timm's ``tf_efficientnet_lite0`` (the OwnData/Pretrained backbone) with an 80-class
linear head, forward, BCE, backward and an SGD step on a fixed batch of 4 at 320 x 320. Prints
the median seconds of ``steps`` steps after one untimed; with ``steps`` 0 it trains until
killed (the second training beside a measured one)."""

import sys
import time

import numpy as np
import timm
import torch

if __name__ == "__main__":
    steps = int(sys.argv[1])
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=80)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.randn(4, 3, 320, 320), torch.randint(0, 2, (4, 80)).float()
    times = []
    while not steps or len(times) < steps + 1:
        start = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    print(f"{np.median(times[1:]):.4f}")
