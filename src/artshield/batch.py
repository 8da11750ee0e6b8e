"""Batch jobs over image files: protect or purify a folder, writing one copy of each image.

The layer between the algorithms (tensors in, tensors out) and the front ends (the command line,
and later the app and a cluster): it reads the inputs (io.plan_batch), runs the method, writes each
copy atomically in the input's format, reads the written file back and measures it against the
original. A file that fails is recorded and the batch goes on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArtshieldError
from .io import Batch, load_image, save_perturbed, save_replaced
from .metrics.image import visibility

JPEG_NOTE = ("JPEG re-encoding (quality 95) weakens the protection and can exceed the budget; write PNG "
             "(--format png) to keep it exact")


# Memory a batch needs beyond the model, measured with `/usr/bin/time -v artshield protect|purify IMG`
# on mini (peak resident memory at 512, 1024, 2048 and 4096 pixels a side): a protection's
# full-resolution perturbation, its gradient and the resized views cost about 64 bytes per pixel of
# every image of a chunk (advdm; glaze, aspl and photoguard within 15 % at 2048); a purifier, one
# image at a time, about 80 (jpeg and impress alike: 2.36 and 2.57 GB at 4096); the visibility
# metrics, image by image, about 150 bytes per pixel up to SSIM's view of 2048 x 2048.
PROTECT_BYTES_PER_PIXEL = 64
PURIFY_BYTES_PER_PIXEL = 80
METRIC_BYTES_PER_PIXEL = 150
METRIC_PIXEL_CAP = 2048 * 2048


def memory_needed(pixels: list[int], chunk: int, per_pixel: int) -> int:
    """Bytes a batch needs beyond the model: its largest chunk (`chunk` images at a time, at
    `per_pixel` bytes per pixel) and the metrics of its largest image."""
    chunks = [sum(pixels[k:k + chunk]) for k in range(0, len(pixels), max(1, chunk))] or [0]
    return per_pixel * max(chunks) + METRIC_BYTES_PER_PIXEL * min(max(pixels or [0]), METRIC_PIXEL_CAP)


def available_memory() -> int | None:
    """Bytes the system can still give (Linux's MemAvailable); None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(batch: Batch, chunk: int, per_pixel: int) -> None:
    """Refuse up front a batch whose images would not fit in the memory this machine has free."""
    need = memory_needed([batch.pixels[name] for _, name in batch.todo], chunk, per_pixel)
    free = available_memory()
    if free is not None and need > 0.9 * free:
        where = {"param": "batch", "value": chunk} if chunk > 1 else {}
        raise ArtshieldError(f"these images need about {need / 2**30:.1f} GiB for the work and the metrics "
                             f"({per_pixel} bytes per pixel of {chunk} image(s) at a time), more than the "
                             f"{free / 2**30:.1f} GiB this machine has free; use "
                             f"{'--batch 1 or ' if chunk > 1 else ''}smaller images", **where)


@dataclass
class BatchResult:
    records: list[dict]                               # one per image done or kept
    failures: list[dict]                              # file, error
    method: dict = field(default_factory=dict)        # the method's settings as it ran (config, extra facts)


def reporter(batch: Batch, head: dict, start: float):
    """(report, checkpoint): report(result) is results.json's content (`head`, then the records, the
    failures, the seconds since `start`, the versions); checkpoint(result) writes it, mid-run, so an
    interrupted batch keeps the records of what it finished."""
    from .io import write_json
    from .provenance import environment

    env = environment()

    def report(done: BatchResult) -> dict:
        return {**head, **done.method, "images": done.records, "failed": done.failures,
                "seconds": round(time.time() - start, 2), "environment": env}

    def checkpoint(done: BatchResult) -> None:
        try:
            write_json(report(done), batch.out / "results.json")
        except OSError:              # a full disk: the run goes on, and its final write says so
            pass

    return report, checkpoint


def write_copy(out: Path, loaded, name: str, save) -> tuple[dict | None, dict | None]:
    """`save(path)` writes the copy of `loaded` as out/name; the file is read back and measured against
    the original. Returns (record, None), or (None, failure) when it cannot be written."""
    try:
        save(out / name)
        written = load_image(out / name).pixels
    except (OSError, ValueError, ArtshieldError) as e:
        return None, {"file": str(loaded.path), "error": f"{loaded.path}: cannot write {name}: "
                                                         f"{str(e).splitlines()[0]}"}
    return {"file": str(loaded.path), "output": name, "size": [written.shape[2], written.shape[1]],
            **visibility(written, loaded.pixels), "notes": loaded.notes}, None


def _failure(path, error: Exception) -> dict:
    """A failed input's record: the file, and one line naming it and what went wrong."""
    return {"file": str(path), "error": f"{path}: {str(error).splitlines()[0]}"}


def _read(items, result: BatchResult) -> list:
    """The chunk's images, read now (plan_batch kept only their paths); a file that cannot be read
    any more fails alone."""
    chunk = []
    for path, name in items:
        try:
            chunk.append((load_image(path), name))
        except ArtshieldError as e:
            result.failures.append({"file": str(path), "error": str(e)})
    return chunk


def chunk_size(method: str, n_images: int, batch_size: int) -> int:
    """Images protected together: `batch_size`, except ASPL, ACE and MetaCloak, whose surrogates
    learn the whole set at once."""
    return n_images if method in ("aspl", "ace", "metacloak") else batch_size


def protect_batch(bundle, batch: Batch, method: str, seed: int = 0, batch_size: int = 4, keep_format: bool = True,
                  progress=None, checkpoint=None, pool=None, **options) -> BatchResult:
    """Protect batch.todo, `batch_size` images at a time (ASPL: all at once, it learns the set);
    chunk k starts from seed + k. A chunk that fails is redone image by image, so that only the
    image at fault fails. `checkpoint(result)` after each chunk (to save the records so far).
    `pool` (cluster.ProtectPool): the chunks run on Ray workers, with the same seeds, and are
    written here in the same order; `progress` then counts images, not steps."""
    from .protect import protect

    result = BatchResult(list(batch.done), list(batch.failures))
    size = chunk_size(method, len(batch.todo), batch_size)

    def compute(jobs):
        """(ProtectResult, seconds) or the exception, for each (pixels, seed) of `jobs`, in order."""
        if pool is not None:
            yield from pool.map(jobs, method, options)
            return
        for pixels, chunk_seed in jobs:
            t0 = time.time()
            try:
                yield protect(bundle, pixels, method=method, seed=chunk_seed, progress=progress, **options), \
                    time.time() - t0
            except (RuntimeError, ValueError, ArtshieldError) as e:
                yield e

    def write(chunk, made, seconds):
        result.method = {"config": made.config, **made.extra}
        for (loaded, name), delta, objective in zip(chunk, made.deltas, made.objective):
            rec, failure = write_copy(batch.out, loaded, name,
                                      lambda path: save_perturbed(loaded, delta, path, keep_format=keep_format))
            if failure:
                result.failures.append(failure)
                continue
            rec.update(budget=made.config["budget"], objective=objective, seconds=round(seconds / len(chunk), 3),
                       **batch.stamp(name))
            if loaded.format == "JPEG" and keep_format:
                rec["notes"] = rec["notes"] + [JPEG_NOTE]
            result.records.append(rec)
        if pool is not None and progress is not None:
            progress(len(chunk))

    read = []                   # the chunks, in the order compute() takes them

    def jobs():
        for k in range(0, len(batch.todo), size):
            chunk = _read(batch.todo[k:k + size], result)
            if chunk:
                read.append((k, chunk))
                yield [loaded.pixels for loaded, _ in chunk], seed + k

    for outcome in compute(jobs()):
        k, chunk = read.pop(0)
        if not isinstance(outcome, Exception):
            write(chunk, *outcome)
        elif len(chunk) == 1:
            result.failures.append(_failure(chunk[0][0].path, outcome))
        else:                                   # find the image at fault: each on its own
            alone = compute(([loaded.pixels], seed + k + i) for i, (loaded, _) in enumerate(chunk))
            for item, single in zip(chunk, alone):
                if isinstance(single, Exception):
                    result.failures.append(_failure(item[0].path, single))
                else:
                    write([item], *single)
        if checkpoint is not None:
            checkpoint(result)
    return result


def protect_steps(bundle, n_images: int, method: str, batch_size: int = 4, **options) -> int:
    """Progress units protect_batch reports for n_images."""
    from .options import make_method

    size = chunk_size(method, n_images, batch_size)
    return make_method("protect", method, bundle, **options).total_steps(size) * -(-n_images // max(1, size))


def purify_batch(purifier, batch: Batch, generator, keep_format: bool = True, progress=None,
                 checkpoint=None) -> BatchResult:
    """Purify batch.todo one image at a time with one generator (so the batch is reproducible);
    `checkpoint(result)` after each image."""
    result = BatchResult(list(batch.done), list(batch.failures))
    for item in batch.todo:
        chunk = _read([item], result)
        if not chunk:
            continue
        (loaded, name), t0 = chunk[0], time.time()
        try:
            (cleaned,) = purifier.run([loaded.pixels], generator, progress=progress)
        except (ValueError, RuntimeError, ArtshieldError) as e:
            result.failures.append(_failure(loaded.path, e))
            continue
        rec, failure = write_copy(batch.out, loaded, name,
                                  lambda path: save_replaced(loaded, cleaned, path, keep_format=keep_format))
        if failure:
            result.failures.append(failure)
            continue
        result.records.append({**rec, "seconds": round(time.time() - t0, 3), **batch.stamp(name)})
        if checkpoint is not None:
            checkpoint(result)
    return result
