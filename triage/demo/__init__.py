"""A real multi-process torch job with injectable faults, and the `triage demo` pipeline.

- `triage.demo.train`: the training job (run under torchrun), see its docstring for the faults.
- `triage.demo.launch`: `run_job(...) -> JobResult`, torchrun with a per-rank log tree.
- `triage.demo.samples`: regenerates samples/ from a real failing run.
- `triage.demo.pipeline`: `run_demo(...)`, the orchestration behind `triage demo`.

Importing this package does not import torch.
"""
