"""Prints a failure of a chosen kind and exits 1, as a training job would die.

usage: emit.py KIND   (oom | value | ok)
The CUDA out-of-memory line follows the PyTorch caching allocator's wording
(c10/cuda/CUDACachingAllocator.cpp, torch >= 2.1); it cannot be produced on this CPU machine.
"""
import sys

kind = sys.argv[1]
if kind == "ok":
    print("step 10 loss 0.5")
    sys.exit(0)
print("step 10 loss 0.5")
print("Traceback (most recent call last):")
print('  File "train.py", line 3, in <module>')
if kind == "oom":
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
          "total capacity of 79.15 GiB of which 1.06 GiB is free. Process 1 has 78.09 GiB memory in use.")
else:
    print("ValueError: bad shape")
sys.exit(1)
