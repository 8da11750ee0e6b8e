"""`artshield study`: ask people whether a protection spoils mimicry, after Hönig et al. (ICLR 2025).

An automated style judge can be fooled or blind (metrics/judges.py checks what it can tell); the
field's accepted ground truth is a pairwise human study. This module turns a bench or check run
into one, serves it, and analyses the answers.

Making a study (`make_study`). Every cell of the run stored the first 8 generations of its mimic
as a grid (bench/experiment.py), generated from the same prompts and noise in every condition of
one training seed. So generation k of a protected cell and generation k of the clean cell with the
same artist, mimic and seed form a *pair*: same prompt, same seed, only the training images differ.
For each condition the study samples up to `pairs` such pairs, and shows each rater:
    the artist's originals (the clean cell's training images) as the reference,
    the two generations side by side, which side holds the condition's picked at random but
    balanced (within each condition half of a rater's pairs have it on the left),
    two questions asked separately: which is closer to the artist's style, which is of better
    quality (forced choice: a rater who cannot tell picks at random, so 50 % = indistinguishable),
    attention checks mixed in: an original of the artist against smooth colour noise (for style
    and for quality, the original is the right answer).
The baseline is mimicry from the clean, unpurified images (Hönig et al.'s: what the mimic would have
got had the art not been protected); `baseline="matched"` compares a purified condition with the
clean images through the same purifier instead (the bench's relative mimicry). Image files get
random names, and the page never sees which side is which: the server keeps the key.

Serving (`serve`). A small HTTP server on this machine (Python's standard library): the page asks
for a rater's trials, and every answer is appended to answers.csv (flushed and synced) the moment
it is clicked, so a closed tab loses nothing; reopening the page with the same rater name resumes
after the last answer. Each rater gets their own order and sides (seeded by the study's seed and
the rater's name).

Analysis (`analyse`). Raters below the attention threshold (default: every check passed) are
left out and listed. For each question and condition: the success rate, the share of answers
that chose the mimicry from the condition over the baseline's. Answers share three factors (the
rater, the mimic's training seed, the prompt), so the interval is a pigeonhole bootstrap that
resamples all three at once (each answer weighted by the product of its rater's, seed's and
prompt's draw counts), percentile, at Holm-adjusted levels over the conditions of a question.
Simulated with rater, seed and prompt effects (tests/test_study.py), its 95 % interval covers the
true rate at least 90 % of the time with 3 raters and about 95 % with 5; with fewer than 3 raters
or 2 training seeds a row gets no interval.
Verdicts (EQUIVALENCE = 0.1):
    upper bound < 0.5                     raters prefer mimicry from clean art: the condition degrades it
    lower bound > 0.5                     raters prefer the condition's mimicry
    interval within 0.5 +- EQUIVALENCE    indistinguishable from mimicry of clean art
    anything else                         inconclusive
    fewer than 3 raters or 2 training seeds: inconclusive: too few samples
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from .errors import ArtshieldError

PAD = 2                       # io.grid's gap between tiles
GRID_COLUMNS = 8              # the bench stores 8 generations per cell in one row
EQUIVALENCE = 0.1
RESAMPLES = 4000
MIN_RATERS = 3                # Hönig et al. had 5 raters per comparison; see the coverage note above
MIN_SEEDS = 2
QUESTIONS = {"style": "Which picture is closer to the artist's style (the originals above)?",
             "quality": "Which picture is of better quality, whatever its style?"}
COLUMNS = ["time", "rater", "position", "trial", "kind", "artist", "mimicry", "condition", "baseline", "seed",
           "prompt", "question", "condition_side", "choice", "chose_condition"]
RATER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


# ------------------------------------------------------------------------------------------ making

def tiles(path: Path, columns: int = GRID_COLUMNS) -> list:
    """The pictures of an io.grid file (one row of `columns`, or several rows), as PIL images."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        side = (im.width - PAD) // columns - PAD
        rows = (im.height - PAD) // (side + PAD)
        if side < 1 or rows < 1 or (side + PAD) * columns + PAD != im.width:
            raise ArtshieldError(f"{path}: not a grid of {columns} pictures per row")
        return [im.crop((PAD + k * (side + PAD), PAD + r * (side + PAD), PAD + k * (side + PAD) + side,
                         PAD + r * (side + PAD) + side)) for r in range(rows) for k in range(columns)]


def _blank(im) -> bool:
    """An unused grid slot (io.grid fills it white)."""
    return min(im.convert("L").getextrema()) >= 255


def _noise(side: int, rng: np.random.Generator):
    """Smooth colour noise: the attention checks' obviously wrong answer."""
    from PIL import Image

    small = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    return Image.fromarray(small).resize((side, side), Image.BICUBIC)


@dataclass(frozen=True)
class _Cell:
    artist: str
    mimicry: str
    seed: int
    condition: str
    purifier: str
    grid: Path
    inputs: Path | None


def _cells(run: Path) -> list[_Cell]:
    path = run / "results.json"
    if not path.is_file():
        raise ArtshieldError(f"{run}: no results.json (a folder written by artshield bench or check)")
    try:
        records = json.loads(path.read_text())["cells"]
    except (ValueError, KeyError, TypeError):
        raise ArtshieldError(f"{path}: not a bench or check results.json (no cells)") from None
    out = []
    for r in records:
        if not r.get("grid") or not (run / r["grid"]).is_file():
            continue
        out.append(_Cell(r["artist"], r["mimicry"], int(r["seed"]), r["condition"], r.get("purifier", "none"),
                         run / r["grid"], run / r["inputs"] if r.get("inputs") and (run / r["inputs"]).is_file()
                         else None))
    return out


def make_study(run: str | Path, out: str | Path, pairs: int = 12, conditions: list[str] | None = None,
               baseline: str = "clean", attention: int = 4, seed: int = 0, title: str | None = None) -> dict:
    """Write a study of `run` (a bench or check output folder) into `out`; returns study.json's content.
    pairs: at most this many per condition (every condition gets the same number, so the study is
    balanced); attention: checks per artist and mimic."""
    from .io import output_folder, write_json, write_text

    if baseline not in ("clean", "matched"):
        raise ArtshieldError(f"baseline {baseline!r}: choose clean or matched")
    if pairs < 2:
        raise ArtshieldError(f"pairs {pairs}: a condition needs at least 2 pairs")
    run = Path(run)
    cells = _cells(run)
    by = {(c.artist, c.mimicry, c.seed, c.condition): c for c in cells}
    clean = {(c.artist, c.mimicry, c.seed, c.purifier): c for c in cells if c.condition.startswith("clean")}
    wanted = sorted({c.condition for c in cells if not c.condition.startswith("clean")})
    if conditions:
        missing = [c for c in conditions if c not in wanted]
        if missing:
            raise ArtshieldError(f"{run}: no cells of condition {', '.join(missing)} (it has: {', '.join(wanted) or 'none'})")
        wanted = list(dict.fromkeys(conditions))
    tiles_of = lru_cache(maxsize=None)(tiles)
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[tuple[_Cell, _Cell, int]]] = {}
    for (artist, mimicry, s, condition), cell in sorted(by.items(), key=lambda kv: kv[0]):
        if condition not in wanted:
            continue
        base = clean.get((artist, mimicry, s, "none" if baseline == "clean" else cell.purifier))
        if base is None:
            continue
        n = min(len(tiles_of(cell.grid)), len(tiles_of(base.grid)))
        groups.setdefault((artist, mimicry, condition), []).extend((cell, base, k) for k in range(n))
    if not groups:
        raise ArtshieldError(f"{run}: no condition has a clean cell of the same artist, mimic and seed to pair with")
    per = min(pairs, *(len(v) for v in groups.values()))
    folder = output_folder(out)
    (folder / "images").mkdir(exist_ok=True)
    token = lambda: rng.bytes(8).hex()                                  # noqa: E731
    cache: dict[tuple, str] = {}

    def save(cell: _Cell, k: int) -> str:
        if (cell.grid, k) not in cache:
            im = tiles_of(cell.grid)[k]
            name = f"images/{token()}.png"
            im.save(folder / name)
            cache[(cell.grid, k)] = name
        return cache[(cell.grid, k)]

    trials, references = [], {}
    for (artist, mimicry, condition), items in sorted(groups.items()):
        items = [x for x in items if not _blank(tiles_of(x[0].grid)[x[2]]) and not _blank(tiles_of(x[1].grid)[x[2]])]
        chosen = rng.choice(len(items), size=min(per, len(items)), replace=False)
        for i in sorted(chosen):
            cell, base, k = items[i]
            trials.append({"id": f"t{len(trials):04d}", "kind": "pair", "artist": artist, "mimicry": mimicry,
                           "condition": condition, "baseline": base.condition, "seed": cell.seed, "prompt": k,
                           "images": {"condition": save(cell, k), "baseline": save(base, k)}})
        if artist not in references:
            src = next((c.inputs for c in cells if c.artist == artist and c.condition == "clean" and c.inputs), None)
            originals = [im for im in (tiles_of(src, columns=4) if src else []) if not _blank(im)]
            names = []
            for im in originals:
                names.append(f"images/{token()}.png")
                im.save(folder / names[-1])
            references[artist] = names
    for artist, mimicry in sorted({(t["artist"], t["mimicry"]) for t in trials}):
        if not references.get(artist):
            continue
        side = tiles_of(next(c.grid for c in cells if c.artist == artist))[0].width
        for i in range(attention):
            name = f"images/{token()}.png"
            _noise(side, rng).save(folder / name)
            trials.append({"id": f"t{len(trials):04d}", "kind": "attention", "artist": artist, "mimicry": mimicry,
                           "condition": "attention", "baseline": "noise", "seed": -1, "prompt": i,
                           "images": {"condition": references[artist][i % len(references[artist])],
                                      "baseline": name}})
    study = {"study": 1, "run": str(run), "seed": seed, "baseline": baseline, "pairs_per_condition": per,
             "questions": QUESTIONS, "title": title or f"Which picture is closer to the artist? ({run.name})",
             "references": references, "trials": trials}
    write_json(study, folder / "study.json")
    write_text(_page(study), folder / "index.html")
    return study


def _page(study: dict) -> str:
    from .report import render

    return render("study.html.j2", title=study["title"], questions=study["questions"])


# ---------------------------------------------------------------------------------------- a rater

def arrangement(study: dict, rater: str) -> list[dict]:
    """The rater's own order and sides: within each condition (and among the attention checks) half of
    the rater's trials show the condition's picture on the left; the order is shuffled. Seeded by the
    study's seed and the rater's name, so a rater who comes back gets the same arrangement."""
    digest = hashlib.sha256(f"{study['seed']}:{rater}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    by: dict[tuple, list[dict]] = {}
    for t in study["trials"]:
        by.setdefault((t["artist"], t["mimicry"], t["condition"]), []).append(t)
    out = []
    for key in sorted(by):
        group = by[key]
        lefts = np.array([i < len(group) // 2 for i in range(len(group))])
        if len(group) % 2:
            lefts[-1] = rng.random() < 0.5
        rng.shuffle(lefts)
        for t, left in zip(group, lefts):
            out.append({**t, "condition_side": "left" if left else "right"})
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _public(study: dict, trial: dict) -> dict:
    """What the page may see of a trial: pictures by side, never which one is which."""
    side = trial["condition_side"]
    other = "right" if side == "left" else "left"
    return {"id": trial["id"], side: trial["images"]["condition"], other: trial["images"]["baseline"],
            "references": study["references"].get(trial["artist"], [])}


class Answers:
    """answers.csv of a study: appended one row per answer, flushed and synced; the first answer of a
    rater to a trial's question counts, a repeat (a double click, a reload) is ignored."""

    def __init__(self, folder: Path):
        self.path = folder / "answers.csv"
        self.lock = threading.Lock()
        self.seen: set[tuple[str, str, str]] = set()
        if self.path.is_file():
            with open(self.path, newline="") as f:
                for row in csv.DictReader(f):
                    self.seen.add((row["rater"], row["trial"], row["question"]))

    def answered(self, rater: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r, trial, q in self.seen:
            if r == rater:
                out.setdefault(trial, []).append(q)
        return out

    def add(self, row: dict) -> bool:
        key = (row["rater"], row["trial"], row["question"])
        with self.lock:
            if key in self.seen:
                return False
            new = not self.path.is_file() or self.path.stat().st_size == 0
            with open(self.path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    w.writeheader()
                w.writerow(row)
                f.flush()
                os.fsync(f.fileno())
            self.seen.add(key)
            return True


def _handler(folder: Path, study: dict, answers: Answers):
    trials_by_rater: dict[str, dict[str, dict]] = {}

    def arranged(rater: str) -> dict[str, dict]:
        if rater not in trials_by_rater:
            trials_by_rater[rater] = {t["id"]: {**t, "position": i} for i, t in enumerate(arrangement(study, rater))}
        return trials_by_rater[rater]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):            # quiet: the CSV is the record
            pass

        def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data) -> None:
            self._send(code, json.dumps(data).encode())

        def do_GET(self):                        # noqa: N802 (the standard library's name)
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                return self._send(200, (folder / "index.html").read_bytes(), "text/html; charset=utf-8")
            if url.path == "/api/trials":
                rater = parse_qs(url.query).get("rater", [""])[0]
                if not RATER.match(rater):
                    return self._json(400, {"error": "a rater name is 1-64 letters, digits or . _ @ -"})
                mine = arranged(rater)
                return self._json(200, {"questions": list(study["questions"]), "answered": answers.answered(rater),
                                        "trials": [_public(study, t) for t in mine.values()]})
            name = unquote(url.path).lstrip("/")
            path = (folder / name).resolve()
            if name.startswith("images/") and path.parent == (folder / "images").resolve() and path.is_file():
                return self._send(200, path.read_bytes(), "image/png")
            return self._json(404, {"error": "not found"})

        def do_POST(self):                       # noqa: N802
            if urlparse(self.path).path != "/api/answer":
                return self._json(404, {"error": "not found"})
            try:
                data = json.loads(self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 4096)))
                rater, trial, question, choice = (data[k] for k in ("rater", "trial", "question", "choice"))
            except (ValueError, KeyError, TypeError):
                return self._json(400, {"error": "an answer is JSON with rater, trial, question and choice"})
            if not isinstance(rater, str) or not RATER.match(rater):
                return self._json(400, {"error": "bad rater name"})
            t = arranged(rater).get(trial)
            if t is None or question not in study["questions"] or choice not in ("left", "right"):
                return self._json(400, {"error": "no such trial, question or choice"})
            row = {"time": f"{time.time():.3f}", "rater": rater, "position": t["position"], "trial": trial,
                   "kind": t["kind"], "artist": t["artist"], "mimicry": t["mimicry"], "condition": t["condition"],
                   "baseline": t["baseline"], "seed": t["seed"], "prompt": t["prompt"], "question": question,
                   "condition_side": t["condition_side"], "choice": choice,
                   "chose_condition": int(choice == t["condition_side"])}
            return self._json(200, {"ok": True, "recorded": answers.add(row)})

    return Handler


def server(folder: str | Path, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """The study's HTTP server (not yet serving: call serve_forever, or use `serve`)."""
    folder = Path(folder)
    try:
        study = json.loads((folder / "study.json").read_text())
        study["trials"]
    except (OSError, ValueError, KeyError):
        raise ArtshieldError(f"{folder}: not a study folder (no readable study.json; make one with artshield study RUN -o DIR)") from None
    return ThreadingHTTPServer((host, port), _handler(folder, study, Answers(folder)))


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8765, log=print) -> None:
    httpd = server(folder, host, port)
    log(f"study at http://{host}:{httpd.server_address[1]}/  (answers go to {Path(folder) / 'answers.csv'}; ^C stops)")
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()


# ---------------------------------------------------------------------------------------- analysis

def read_answers(path: str | Path) -> list[dict]:
    """answers.csv rows, the first answer of each rater to each trial's question, typed."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = set(reader.fieldnames or ())
            rows = list(reader) if set(COLUMNS) <= header else []
    except OSError as e:
        raise ArtshieldError(f"{path}: cannot be read ({e.strerror})") from None
    except (UnicodeDecodeError, csv.Error):
        raise ArtshieldError(f"{path}: not a study's answers.csv (not CSV text)") from None
    if not set(COLUMNS) <= header:
        raise ArtshieldError(f"{path}: not a study's answers.csv (no column {', '.join(sorted(set(COLUMNS) - header))})")
    out, seen = [], set()
    for i, r in enumerate(rows, 2):
        key = (r["rater"], r["trial"], r["question"])
        if key in seen:
            continue
        seen.add(key)
        try:
            out.append({**r, "seed": int(r["seed"]), "prompt": int(r["prompt"]), "chose_condition": int(r["chose_condition"])})
        except ValueError:
            raise ArtshieldError(f"{path}: line {i} is not a study answer (seed, prompt, chose_condition must be whole numbers)") from None
    return out


def bootstrap(values: np.ndarray, raters: np.ndarray, seeds: np.ndarray, prompts: np.ndarray,
              resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """The pigeonhole bootstrap of a mean over three crossed factors: each resample draws raters,
    training seeds and prompts with replacement, independently, and weights each answer by the
    product of its three draw counts. Returns the resampled means (NaN where every weight is 0)."""
    rng = np.random.default_rng(seed)
    codes = [np.unique(f, return_inverse=True)[1] for f in (raters, seeds, prompts)]
    sizes = [int(c.max()) + 1 for c in codes]
    means = np.empty(resamples)
    for i in range(resamples):
        w = np.ones(len(values))
        for c, n in zip(codes, sizes):
            w *= np.bincount(rng.integers(n, size=n), minlength=n)[c]
        means[i] = (w * values).sum() / w.sum() if w.sum() else np.nan
    return means


def _word(question: str, lo: float, hi: float) -> str:
    thing = "style" if question == "style" else "quality"
    if hi < 0.5:
        return f"raters prefer the {thing} of mimicry from clean art: the condition degrades it"
    if lo > 0.5:
        return f"raters prefer the {thing} of the condition's mimicry"
    if 0.5 - EQUIVALENCE <= lo and hi <= 0.5 + EQUIVALENCE:
        return f"indistinguishable from mimicry of clean art ({thing})"
    return "inconclusive"


def analyse(path: str | Path, min_attention: float = 1.0, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Success rates with Holm-adjusted intervals per question and condition (see the module's doc)."""
    from .bench.stats import ALPHA, holm_levels

    rows = read_answers(path)
    if not rows:
        raise ArtshieldError(f"{path}: no answers yet")
    raters = sorted({r["rater"] for r in rows})
    passed, excluded = [], {}
    for rater in raters:
        checks = [r["chose_condition"] for r in rows if r["rater"] == rater and r["kind"] == "attention"]
        if not checks:
            excluded[rater] = "answered no attention check"
        elif np.mean(checks) < min_attention:
            excluded[rater] = f"passed {sum(checks)} of {len(checks)} attention checks"
        else:
            passed.append(rater)
    kept = [r for r in rows if r["rater"] in passed and r["kind"] == "pair"]
    out_rows = []
    for question in sorted({r["question"] for r in kept}):
        keys = sorted({(r["artist"], r["mimicry"], r["condition"]) for r in kept if r["question"] == question})
        found = []
        for artist, mimicry, condition in keys:
            sel = [r for r in kept if r["question"] == question and (r["artist"], r["mimicry"], r["condition"])
                   == (artist, mimicry, condition)]
            y = np.array([r["chose_condition"] for r in sel], float)
            f = [np.array([r[k] for r in sel]) for k in ("rater", "seed", "prompt")]
            n_r, n_s = len(set(f[0])), len(set(f[1]))
            row = {"question": question, "artist": artist, "mimicry": mimicry, "condition": condition,
                   "baseline": sel[0]["baseline"], "rate": round(float(y.mean()), 4), "answers": len(y),
                   "raters": n_r, "seeds": n_s, "prompts": len(set(f[2]))}
            if n_r < MIN_RATERS or n_s < MIN_SEEDS:
                row["verdict"] = (f"inconclusive: too few samples ({n_r} rater(s), {n_s} training seed(s); "
                                  f"the interval needs at least {MIN_RATERS} raters and {MIN_SEEDS} seeds)")
                row["means"] = None
            else:
                means = bootstrap(y, *f, resamples=resamples, seed=seed)
                means = means[np.isfinite(means)]
                below, above = (np.sum(means <= 0.5) + 1) / (len(means) + 1), (np.sum(means >= 0.5) + 1) / (len(means) + 1)
                row["p"] = round(float(min(1.0, 2 * min(below, above))), 5)
                row["means"] = means
            found.append(row)
        tested = [r for r in found if r["means"] is not None]
        for r, lev in zip(tested, holm_levels([r["p"] for r in tested])):
            lo, hi = np.quantile(r["means"], [(1 - lev) / 2, (1 + lev) / 2])
            lo95, hi95 = np.quantile(r["means"], [ALPHA / 2, 1 - ALPHA / 2])
            r.update(level=round(float(lev), 5), low=round(float(lo), 4), high=round(float(hi), 4),
                     low95=round(float(lo95), 4), high95=round(float(hi95), 4), verdict=_word(question, lo, hi))
        for r in found:
            del r["means"]
        out_rows.extend(found)
    return {"answers": str(path), "raters": raters, "kept_raters": passed, "excluded_raters": excluded,
            "min_attention": min_attention, "equivalence": EQUIVALENCE, "rows": out_rows}


def table(result: dict) -> str:
    """The analysis as plain text, one line per question and condition."""
    lines = [f"{len(result['kept_raters'])} of {len(result['raters'])} rater(s) kept"
             + "".join(f"; {r} left out: {why}" for r, why in result["excluded_raters"].items())]
    for r in result["rows"]:
        ci = f" [{r['low']:.2f}, {r['high']:.2f}]" if "low" in r else ""
        lines.append(f"{r['question']:<8} {r['artist']} {r['mimicry']} {r['condition']} vs {r['baseline']}: "
                     f"{r['rate']:.2f}{ci} ({r['answers']} answers) {r['verdict']}")
    return "\n".join(lines)
