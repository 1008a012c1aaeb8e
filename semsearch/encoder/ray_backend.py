"""Ingest's model on a Ray cluster: a pool of actors, one model each (and one GPU each where the
cluster has GPUs), behind the same ``Encoder`` protocol as a local model.

Only the encoding travels. Reading, checking keys, skipping unchanged documents, sorting a chunk's
passages into batches, pooling and writing stay in the ingesting process, so a Ray ingest commits
the same transactions as a plain one and resumes the same way. A chunk's batches go to the pool
at once (``encode_many``) and come back in order.

Ray is an optional extra: ``pip install 'semsearch[ray]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from ..core.types import Encoded, Span
from ..errors import ConfigError

logger = logging.getLogger(__name__)

INSTALL = "Ray is not installed; install the extra with: pip install 'semsearch[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL) from None
    return ray


class _Worker:
    """One model in one Ray actor (its threads set to the CPUs Ray gave it)."""

    def __init__(self, name: str, device: str, backend: str, cache: str, threads: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from . import choose_backend, load_encoder

        if choose_backend(backend, device, "ingest") == "torch":
            import torch

            torch.set_num_threads(threads)
        self.encoder = load_encoder(name, device, backend, cache, "ingest")

    def describe(self) -> dict[str, Any]:
        e = self.encoder
        return {"name": e.name, "dim": e.dim, "max_tokens": e.max_tokens, "pooling": e.pooling, "special_tokens": e.special_tokens}

    def encode(self, texts: list[str]) -> list[Encoded]:
        return self.encoder.encode(texts)

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        return self.encoder.split(texts, overlap, truncate)


class RayEncoder:
    """An ``Encoder`` whose passes run on a pool of Ray actors.

    ``address`` 'local' starts a local cluster on this machine's cores (shut down by ``close``);
    any other value is a running cluster's address ('auto', 'ray://head:10001', 'host:6379').
    ``workers`` 0 means one per GPU of the cluster, else one per two CPUs.
    """

    def __init__(self, name: str, device: str, backend: str, cache: str, address: str, workers: int = 0) -> None:
        ray = import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            try:
                if address == "local":
                    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot reach a Ray cluster at {address!r} ({str(exc).strip().splitlines()[0]}); start one with "
                    "'ray start --head' and pass its address, or use --ray local"
                ) from None
            self._started = True
        try:
            resources = ray.cluster_resources()
            gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
            if workers < 0:
                raise ConfigError(f"--ray-workers must be 0 (one per GPU, else one per two CPUs) or more, not {workers}")
            workers = workers or (gpus if gpus else max(1, cpus // 2))
            per_gpu = 1 if gpus >= workers else (gpus / workers if gpus else 0)
            threads = max(1, cpus // workers)
            if device == "auto":
                device = "cuda" if gpus else "cpu"
            actor = ray.remote(num_cpus=threads, num_gpus=per_gpu)(_Worker)
            self._actors = [actor.remote(name, device, backend, cache, threads) for _ in range(workers)]
            info = ray.get(self._actors[0].describe.remote())
        except BaseException:
            self.close()
            raise
        self.name, self.dim, self.max_tokens = info["name"], info["dim"], info["max_tokens"]
        self.pooling, self.special_tokens = info["pooling"], info["special_tokens"]
        self.workers, self.gpus_per_worker = workers, per_gpu
        self._next = 0
        logger.info("ray: %d workers (%s GPU each, %d CPUs each)", workers, per_gpu, threads)

    def _actor(self) -> Any:
        self._next = (self._next + 1) % len(self._actors)
        return self._actors[self._next]

    def encode(self, texts: list[str]) -> list[Encoded]:
        result: list[Encoded] = self._ray.get(self._actor().encode.remote(texts))
        return result

    def encode_many(self, batches: list[list[str]]) -> Iterator[list[Encoded]]:
        """Every batch of a chunk sent to the pool at once (round robin), answers in order."""
        pending = [self._actors[i % len(self._actors)].encode.remote(batch) for i, batch in enumerate(batches)]
        for ref in pending:
            yield self._ray.get(ref)

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        spans: list[list[Span]] = self._ray.get(self._actor().split.remote(texts, overlap, truncate))
        return spans

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            self._ray.kill(actor)
        self._actors = []
        if self._started:
            self._ray.shutdown()
            self._started = False
