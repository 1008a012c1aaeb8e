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
import math
import os
from collections.abc import Iterator
from typing import Any

from ..core.types import Encoded, Span
from ..errors import ConfigError, ModelError

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

    def __init__(self, name: str, device: str, backend: str, cache: str, threads: int, precision: str = "fp32") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from . import choose_backend, load_encoder

        if choose_backend(backend, device, "ingest") == "torch":
            import torch

            torch.set_num_threads(threads)
        self.encoder = load_encoder(name, device, backend, cache, "ingest", precision)

    def describe(self) -> dict[str, Any]:
        e = self.encoder
        return {"name": e.name, "dim": e.dim, "max_tokens": e.max_tokens, "pooling": e.pooling, "special_tokens": e.special_tokens}

    def encode(self, texts: list[str]) -> list[Encoded]:
        return self.encoder.encode(texts)

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        return self.encoder.split(texts, overlap, truncate)


START_TIMEOUT = 600  # seconds for every actor to load its model


def _resources(ray: Any) -> tuple[int, int, int]:
    """The cluster's GPUs and CPUs, and the most CPUs one alive node has."""
    total = ray.cluster_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
    node_cpus = max((int(n.get("CPU", 0)) for n in nodes), default=int(total.get("CPU", 1)))
    return int(total.get("GPU", 0)), int(total.get("CPU", 1)), max(1, node_cpus)


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


class RayEncoder:
    """An ``Encoder`` whose passes run on a pool of Ray actors.

    ``address`` 'local' starts a local cluster on this machine's cores (shut down by ``close``);
    any other value is a running cluster's address ('auto', 'ray://head:10001', 'host:6379').
    ``workers`` 0 means one per GPU of the cluster, else one per two CPUs. An actor gets one GPU
    (a share of one when there are more workers than GPUs) and one CPU, or, on a cluster
    without GPUs, its share of the CPUs (at most one node's) as threads.
    """

    def __init__(self, name: str, device: str, backend: str, cache: str, address: str, workers: int = 0, precision: str = "fp32") -> None:
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
            if workers < 0:
                raise ConfigError(f"--ray-workers must be 0 (one per GPU, else one per two CPUs) or more, not {workers}")
            gpus, cpus, node_cpus = _resources(ray)
            workers = workers or (gpus if gpus else max(1, cpus // 2))
            # what one actor asks for must fit on one node, or Ray never places it
            per_gpu = 0.0 if not gpus else 1.0 if gpus >= workers else 1.0 / math.ceil(workers / gpus)
            threads = 1 if gpus else max(1, min(node_cpus, cpus // workers))
            if device == "auto":
                device = "cuda" if gpus else "cpu"
            actor = ray.remote(num_cpus=threads, num_gpus=per_gpu)(_Worker)
            self._actors = [actor.remote(name, device, backend, cache, threads, precision) for _ in range(workers)]
            info = self._started_actors(workers, threads, per_gpu)
        except BaseException:
            self.close()
            raise
        self.name, self.dim, self.max_tokens = info["name"], info["dim"], info["max_tokens"]
        self.pooling, self.special_tokens = info["pooling"], info["special_tokens"]
        self.workers, self.gpus_per_worker = workers, per_gpu
        self._next = 0
        logger.info("ray: %d workers (%s GPU each, %d CPUs each)", workers, per_gpu, threads)

    def _started_actors(self, workers: int, threads: int, per_gpu: float) -> dict[str, Any]:
        """Every actor's model loaded, or a one-line error: a model that fails in an actor, or
        actors the cluster cannot place (Ray would wait for them forever)."""
        ray = self._ray
        try:
            infos = ray.get([a.describe.remote() for a in self._actors], timeout=START_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise ConfigError(
                f"the Ray cluster did not start {workers} model actors ({threads} CPU and {per_gpu:g} GPU each) within "
                f"{START_TIMEOUT} s; it has {ray.available_resources()}: ask for fewer --ray-workers"
            ) from None
        except ray.exceptions.RayError as exc:
            raise ModelError(f"a Ray actor could not load the model: {_last_line(exc)}") from None
        info: dict[str, Any] = infos[0]
        return info

    def _actor(self) -> Any:
        self._next = (self._next + 1) % len(self._actors)
        return self._actors[self._next]

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            raise ModelError(f"a Ray model actor failed: {_last_line(exc)}; what was stored before is kept, run the same command again to resume") from None

    def encode(self, texts: list[str]) -> list[Encoded]:
        result: list[Encoded] = self._get(self._actor().encode.remote(texts))
        return result

    def encode_many(self, batches: list[list[str]]) -> Iterator[list[Encoded]]:
        """Every batch of a chunk sent to the pool at once (round robin, starting where the last
        chunk stopped), answers in order."""
        first = self._next
        pending = [self._actors[(first + i) % len(self._actors)].encode.remote(batch) for i, batch in enumerate(batches)]
        self._next = (first + len(batches)) % len(self._actors)
        for ref in pending:
            yield self._get(ref)

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        spans: list[list[Span]] = self._get(self._actor().split.remote(texts, overlap, truncate))
        return spans

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            self._ray.kill(actor)
        self._actors = []
        if self._started:
            self._ray.shutdown()
            self._started = False
