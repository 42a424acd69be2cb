"""Run facts that logs state in passing: the world size.

    world_size=1024 / WORLD_SIZE: 1024 / world size 1024      trainers, torchrun env dumps
    ... NCCL INFO comm 0x... rank 3 nranks 1024 ... Init COMPLETE    NCCL (init lines)
    Rank 3/1024 / [Rank 3 / 1024]                              Megatron, DeepSpeed banners
"""

from __future__ import annotations

import re

WORLD_PREFILTER: tuple[str, ...] = (
    r"(?:world[_ ]size|WORLD_SIZE)\s*(?:[=:]\s*|\s)[0-9]",
    r"nranks\s+[0-9]+",
)
_WORLD_RES = (
    re.compile(r"(?:world[_ ]size|WORLD_SIZE)\s*(?:[=:]\s*|\s)(\d{1,7})\b"),
    re.compile(r"\bnranks\s+(\d{1,7})\b"),
)


def parse_world_size(text: str) -> int | None:
    for rx in _WORLD_RES:
        m = rx.search(text)
        if m:
            n = int(m.group(1))
            return n if n > 0 else None
    return None
