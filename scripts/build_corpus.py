"""Build the icon corpus that the embedded "mini" model is trained and evaluated on.

Each Debian icon theme is one "artist". A fixed list of concepts (clearly distinct objects, each
mapped to freedesktop icon names and common legacy aliases) gives captions such as
"trash can icon, papirus style". Icons are rendered at 64x64 over white and written as PNG files
with a manifest. Run as root on Debian (it installs the theme packages with apt when missing):

    python scripts/build_corpus.py --out src/artshield/assets/corpus

The output is deterministic for a given set of package versions (recorded in the manifest).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ICON_ROOT = Path("/usr/share/icons")
SIZE = 64
SEED = 20261121

# theme directory -> (style word used in captions, Debian package)
TRAIN_THEMES = {
    "Papirus": ("papirus", "papirus-icon-theme"),
    "breeze": ("breeze", "breeze-icon-theme"),
    "Paper": ("paper", "paper-icon-theme"),
    "oxygen": ("oxygen", "oxygen-icon-theme"),
    "Faenza": ("faenza", "faenza-icon-theme"),
    "elementary": ("elementary", "elementary-icon-theme"),
    "Adwaita": ("adwaita", "adwaita-icon-theme"),
    "Numix": ("numix", "numix-icon-theme"),
    "Tango": ("tango", "tango-icon-theme"),
    "Faba": ("faba", "faba-icon-theme"),
    "bloom": ("bloom", "deepin-icon-theme"),
    "Nuovo": ("nuovo", "gnome-icon-theme-nuovo"),
    "nuoveXT2": ("nuovext", "lxde-icon-theme"),
    "yasis": ("yasis", "gnome-icon-theme-yasis"),
    "gnome-colors-common": ("gnomecolors", "gnome-colors-common"),
    "suru": ("suru", "suru-icon-theme"),
}
# Never used to train mini: the unseen artists of the mimicry experiments.
HELDOUT_THEMES = {
    "gartoon": ("gartoon", "gnome-icon-theme-gartoon"),
    "sugar": ("sugar", "sugar-icon-theme"),
    "Moka": ("moka", "moka-icon-theme"),
}

# concept words -> icon names, best first
CONCEPTS = {
    "trash can": ["user-trash", "gnome-fs-trash-empty", "trashcan_empty", "emptytrash"],
    "folder": ["folder", "inode-directory", "gnome-fs-directory"],
    "music folder": ["folder-music", "folder-sound"],
    "pictures folder": ["folder-pictures", "folder-images"],
    "printer": ["printer", "gnome-dev-printer", "printer-printing"],
    "hard disk": ["drive-harddisk", "gnome-dev-harddisk", "harddrive"],
    "optical disc": ["media-optical", "gnome-dev-cdrom", "media-cdrom", "cdrom_unmount"],
    "computer": ["computer", "gnome-fs-client", "system"],
    "terminal": ["utilities-terminal", "gnome-terminal", "terminal", "konsole"],
    "text document": ["text-x-generic", "gnome-mime-text", "txt"],
    "image file": ["image-x-generic", "gnome-mime-image", "image"],
    "audio file": ["audio-x-generic", "gnome-mime-audio", "sound"],
    "video file": ["video-x-generic", "gnome-mime-video", "video"],
    "package": ["package-x-generic", "package", "gnome-package"],
    "web browser": ["web-browser", "applications-internet", "internet-web-browser", "browser"],
    "server": ["network-server", "gnome-fs-server"],
    "camera": ["camera-photo", "camera", "gnome-dev-camera"],
    "keyboard": ["input-keyboard", "gnome-dev-keyboard", "keyboard"],
    "mouse": ["input-mouse", "gnome-dev-mouse-optical", "mouse"],
    "scanner": ["scanner", "gnome-dev-scanner"],
    "warning sign": ["dialog-warning", "gtk-dialog-warning", "messagebox_warning"],
    "error sign": ["dialog-error", "gtk-dialog-error", "messagebox_critical"],
    "information sign": ["dialog-information", "gtk-dialog-info", "messagebox_info"],
    "question mark": ["dialog-question", "gtk-dialog-question", "help-browser"],
    "padlock": ["system-lock-screen", "gnome-lockscreen", "lock", "emblem-readonly"],
    "power button": ["system-shutdown", "gnome-shutdown", "exit"],
    "magnifying glass": ["system-search", "edit-find", "gnome-searchtool", "search", "kfind"],
    "text editor": ["accessories-text-editor", "text-editor", "gedit"],
    "calculator": ["accessories-calculator", "gnome-calculator", "calc"],
    "spreadsheet": ["x-office-spreadsheet", "gnome-mime-application-vnd.ms-excel"],
    "presentation": ["x-office-presentation", "gnome-mime-application-vnd.ms-powerpoint"],
    "calendar": ["x-office-calendar", "office-calendar", "vcalendar", "date"],
    "address book": ["x-office-address-book", "address-book-new", "contact-new"],
    "font": ["preferences-desktop-font", "font-x-generic", "fonts"],
    "game controller": ["applications-games", "input-gaming", "package_games"],
    "play button": ["media-playback-start", "gtk-media-play-ltr", "player_play"],
    "pause button": ["media-playback-pause", "gtk-media-pause", "player_pause"],
    "stop button": ["media-playback-stop", "gtk-media-stop", "player_stop"],
    "record button": ["media-record", "gtk-media-record", "player_record"],
    "eject button": ["media-eject", "player_eject"],
    "loudspeaker": ["audio-volume-high", "multimedia-volume-control", "stock_volume-max"],
    "floppy disk": ["document-save", "media-floppy", "gtk-save", "filesave"],
    "house": ["go-home", "gtk-home", "user-home", "gnome-fs-home", "gohome"],
    "right arrow": ["go-next", "gtk-go-forward-ltr", "forward"],
    "up arrow": ["go-up", "gtk-go-up", "up"],
    "undo arrow": ["edit-undo", "gtk-undo-ltr", "undo"],
    "scissors": ["edit-cut", "gtk-cut", "editcut"],
    "clipboard": ["edit-paste", "gtk-paste", "editpaste"],
    "refresh arrows": ["view-refresh", "gtk-refresh", "reload"],
    "plus sign": ["list-add", "gtk-add", "add"],
    "minus sign": ["list-remove", "gtk-remove", "remove"],
    "star": ["emblem-favorite", "bookmark-new", "starred", "bookmarks"],
    "envelope": ["mail-unread", "internet-mail", "mail-message-new", "emblem-mail", "email"],
    "monitor": ["video-display", "gnome-dev-monitor", "display"],
    "wireless signal": ["network-wireless", "gnome-dev-wavelan"],
    "battery": ["battery", "gnome-dev-battery", "battery-full"],
    "telephone": ["phone", "call-start", "gnome-dev-phone"],
    "usb stick": ["drive-removable-media", "gnome-dev-removable-usb", "drive-removable-media-usb"],
    "wrench": ["preferences-system", "gtk-preferences", "gnome-settings", "configure"],
    "people": ["system-users", "config-users", "stock_people"],
    "clock": ["clock", "preferences-system-time", "appointment-new", "alarm-clock"],
    "pdf document": ["application-pdf", "gnome-mime-application-pdf", "pdf"],
    "web page": ["text-html", "gnome-mime-text-html", "html"],
    "script": ["text-x-script", "application-x-shellscript", "gnome-mime-application-x-shellscript"],
    "paint palette": ["preferences-desktop-theme", "gnome-settings-theme", "applications-graphics"],
    "wallpaper": ["preferences-desktop-wallpaper", "gnome-settings-background", "background"],
    "exit door": ["system-log-out", "application-exit", "gnome-logout", "gtk-quit"],
    "close cross": ["window-close", "gtk-close", "fileclose"],
    "sound card": ["audio-card", "gnome-dev-sound-card"],
    "memory card": ["media-flash", "gnome-dev-media-cf", "media-flash-sd-mmc"],
    "network cable": ["network-wired", "gnome-dev-ethernet"],
    "download arrow": ["folder-download", "emblem-downloads", "download"],
    "zoom in": ["zoom-in", "gtk-zoom-in", "viewmag+"],
    "bold letter": ["format-text-bold", "gtk-bold", "text_bold"],
    "centred text": ["format-justify-center", "gtk-justify-center", "text_center"],
    "media player": ["multimedia-player", "applications-multimedia", "gnome-multimedia"],
    "cd image": ["application-x-cd-image", "gnome-mime-application-x-cd-image"],
}
MIN_CONCEPT_THEMES = 12       # a concept is kept when at least this many training themes draw it
EXTRA_PER_TRAIN_THEME = 140   # more icons per training theme (captioned from their names)
MIN_EXTRA_THEMES = 6          # an extra icon name must be drawn by this many training themes
FINETUNE_PER_HELDOUT = 60     # fine-tuning images per held-out theme (outside the concept set)
REFERENCE_EXTRA_PER_HELDOUT = 60  # more reference images per held-out theme, besides its concepts
JUDGE_TEST_FRACTION = 0.25    # of each theme's images (fine-tuning sets excepted), kept from the judge
DUPLICATES = [(12, 50), (12, 100)]  # (how many training images, copies of each)
# The judge-only pool: more real icons for the judge, stored at 32x32, never seen by mini.
JUDGE_POOL_PER_THEME = 250    # more icons of each artist theme, for the style head
JUDGE_POOL_SIZE = 32
NEAR_COPY_PSNR_DB = 20.0      # a pool image this close to a judge test image is left out
# themes that are no artist of the corpus (near-copies of one, or too few icons) but draw the
# same concepts: their concept icons train the judge's concept head, with no style label
CONCEPT_ONLY_THEMES = ["Obsidian", "mate", "gnome", "elementary-xfce", "Papirus-Dark", "ePapirus", "breeze-dark",
                       "Faenza-Dark", "Numix-Circle", "Sea", "Vintage", "bloom-classic", "menta", "Suede",
                       "gnome-brave", "Paper-Mono-Dark", "Obsidian-Light", "Numix-Light", "Papirus-Light"]
CONCEPT_ONLY_PACKAGES = ["obsidian-icon-theme", "mate-icon-theme", "gnome-icon-theme", "elementary-xfce-icon-theme",
                         "gnome-brave-icon-theme", "gnome-icon-theme-suede"]

_PREFIXES = ("gnome-mime-", "gnome-dev-", "gnome-fs-", "gnome-", "gtk-", "stock_", "application-x-",
             "application-", "text-x-", "x-office-", "applications-", "accessories-", "utilities-",
             "preferences-desktop-", "preferences-", "emblem-", "folder-", "media-", "input-")


def theme_files(theme: str) -> dict[str, list[Path]]:
    """Icon name -> files drawn by this theme itself (symbolic variants excluded)."""
    names: dict[str, list[Path]] = {}
    for dirpath, _dirs, files in os.walk(ICON_ROOT / theme, followlinks=True):
        if "symbolic" in dirpath:
            continue
        for f in files:
            m = re.match(r"(.+)\.(svg|svgz|png)$", f)
            if m and not m.group(1).endswith("-symbolic"):
                names.setdefault(m.group(1), []).append(Path(dirpath) / f)
    return names


def _design_size(path: Path) -> int:
    best = 0
    for part in path.parts:
        if part == "scalable":
            best = max(best, 512)
        m = re.match(r"^(\d+)(x\d+)?(@(\d)x)?$", part)
        if m:
            best = max(best, int(m.group(1)) * int(m.group(4) or 1))
    return best


def best_file(paths: list[Path]) -> Path:
    """The largest design of an icon; vector wins a tie; path order breaks the rest."""
    return max(sorted(paths), key=lambda p: (_design_size(p), p.suffix != ".png"))


def render(path: Path, size: int = SIZE) -> Image.Image:
    """Render one icon file to an RGB image of size x size over white, aspect kept, centred."""
    if path.suffix == ".png":
        im = Image.open(path).convert("RGBA")
    else:
        png = subprocess.run(["rsvg-convert", "-w", str(size), "-h", str(size), "-a", str(path)],
                             capture_output=True, check=True).stdout
        im = Image.open(io.BytesIO(png)).convert("RGBA")
    im.thumbnail((size, size), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(im, ((size - im.width) // 2, (size - im.height) // 2))
    return canvas.convert("RGB")


def name_to_words(name: str) -> str:
    """'preferences-desktop-font' -> 'desktop font'; a plain-words subject for captions."""
    for p in _PREFIXES:
        if name.startswith(p) and len(name) > len(p) + 2:
            name = name[len(p):]
            break
    words = re.sub(r"[^a-z0-9]+", " ", name.lower()).split()
    return " ".join(w for w in words if not w.isdigit()) or name


def is_blank(im: Image.Image) -> bool:
    a = np.asarray(im, dtype=np.float32)
    return float((a < 245).any(axis=2).mean()) < 0.02


def package_version(pkg: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
    return out.stdout.strip()


def ensure_packages(pkgs: list[str]) -> None:
    missing = [p for p in pkgs if not package_version(p)]
    if missing:
        print("installing", " ".join(missing), file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True)
    if shutil.which("rsvg-convert") is None:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "librsvg2-bin"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    all_themes = {**TRAIN_THEMES, **HELDOUT_THEMES}
    ensure_packages(sorted({pkg for _, pkg in all_themes.values()} | set(CONCEPT_ONLY_PACKAGES)))
    rng = np.random.default_rng(SEED)
    files = {t: theme_files(t) for t in all_themes}

    def concept_source(theme: str, concept: str) -> tuple[str, Path] | None:
        for alias in CONCEPTS[concept]:
            if alias in files[theme]:
                return alias, best_file(files[theme][alias])
        return None

    concepts = [c for c in CONCEPTS
                if sum(concept_source(t, c) is not None for t in TRAIN_THEMES) >= MIN_CONCEPT_THEMES]
    concept_aliases = {a for c in CONCEPTS for a in CONCEPTS[c]}
    # extra icon names: drawn by many training themes, not a concept alias, plain words distinct
    counts: dict[str, int] = {}
    for t in TRAIN_THEMES:
        for n in files[t]:
            counts[n] = counts.get(n, 0) + 1
    extra_names = sorted((n for n, k in counts.items()
                          if k >= MIN_EXTRA_THEMES and n not in concept_aliases
                          and not n.startswith(("gtk-", "gnome-mime-", "stock_"))),
                         key=lambda n: (-counts[n], n))

    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "images").mkdir(parents=True)
    (args.out / "licenses").mkdir()
    records = []
    for theme, (style, pkg) in all_themes.items():
        heldout = theme in HELDOUT_THEMES
        seen_files: set[str] = set()
        seen_pixels: set[str] = set()
        theme_recs = []

        def add(icon: str, path: Path, concept: str | None, subject: str) -> bool:
            real = os.path.realpath(path)
            if real in seen_files:
                return False
            try:
                im = render(path)
            except (subprocess.CalledProcessError, OSError) as e:
                print(f"skip {path}: {e}", file=sys.stderr)
                return False
            digest = hashlib.sha256(im.tobytes()).hexdigest()
            if digest in seen_pixels or is_blank(im):
                return False
            seen_files.add(real)
            seen_pixels.add(digest)
            slug = re.sub(r"[^a-z0-9]+", "-", subject).strip("-")
            rel = f"images/{style}/{slug}.png"
            if any(r["file"] == rel for r in theme_recs):
                rel = f"images/{style}/{slug}-{re.sub(r'[^a-z0-9]+', '-', icon.lower())}.png"
            (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
            im.save(args.out / rel, optimize=True)
            theme_recs.append({
                "file": rel, "theme": style, "package": pkg, "icon_name": icon,
                "source": str(path.relative_to(ICON_ROOT)), "concept": concept,
                "caption": f"{subject} icon, {style} style", "sha256": digest,
            })
            return True

        for concept in concepts:
            src = concept_source(theme, concept)
            if src:
                add(src[0], src[1], concept, concept)
        n_extra = FINETUNE_PER_HELDOUT + REFERENCE_EXTRA_PER_HELDOUT if heldout else EXTRA_PER_TRAIN_THEME
        pool = extra_names if not heldout else sorted(
            (n for n in files[theme] if n not in concept_aliases), key=lambda n: (-counts.get(n, 0), n))
        taken = 0
        used_subjects = {r["caption"] for r in theme_recs}
        for name in pool:
            if taken >= n_extra:
                break
            if name not in files[theme]:
                continue
            subject = name_to_words(name)
            if f"{subject} icon, {style} style" in used_subjects or subject in CONCEPTS:
                continue
            if add(name, best_file(files[theme][name]), None, subject):
                used_subjects.add(f"{subject} icon, {style} style")
                taken += 1
        # splits: a held-out theme's extra icons alternate between fine-tuning and reference, so
        # that both sets have the same mix; the judge sees no fine-tuning image at all
        extra_index = 0
        for r in theme_recs:
            if not heldout:
                r["split"] = "train"
            elif r["concept"]:
                r["split"] = "reference"
            else:
                r["split"] = "finetune" if extra_index % 2 == 0 else "reference"
                extra_index += 1
        judged = [r for r in theme_recs if r["split"] != "finetune"]
        order = rng.permutation(len(judged))
        n_test = int(round(JUDGE_TEST_FRACTION * len(judged)))
        for i, j in enumerate(order):
            judged[j]["judge_split"] = "test" if i < n_test else "train"
        for r in theme_recs:
            r.setdefault("judge_split", None)
        records.extend(theme_recs)
        n_concepts = sum(1 for r in theme_recs if r["concept"])
        print(f"{theme:22s} {style:12s} concepts={n_concepts:3d} extra={taken:3d}"
              f" {'held-out' if heldout else ''}", file=sys.stderr)
        copyright_file = Path("/usr/share/doc") / pkg / "copyright"
        if copyright_file.exists():
            shutil.copyfile(copyright_file, args.out / "licenses" / f"{pkg}.copyright")

    # planted duplicates for the memorisation audit: drawn from training images, spread over themes
    train_ids = [i for i, r in enumerate(records) if r["split"] == "train"]
    chosen = rng.choice(train_ids, size=sum(n for n, _ in DUPLICATES), replace=False)
    duplicates = []
    k = 0
    for n, copies in DUPLICATES:
        for i in chosen[k:k + n]:
            duplicates.append({"file": records[i]["file"], "caption": records[i]["caption"], "copies": copies})
        k += n
    for r in records:
        r["copies"] = next((d["copies"] for d in duplicates if d["file"] == r["file"]), 1)

    records.extend(judge_pool(args.out, files, concepts, concept_aliases, records, all_themes))

    manifest = {
        "image_size": SIZE,
        "seed": SEED,
        "background": "white",
        "themes": {style: {"directory": t, "package": pkg, "version": package_version(pkg),
                           "heldout": t in HELDOUT_THEMES} for t, (style, pkg) in all_themes.items()},
        "concepts": concepts,
        "duplicates": duplicates,
        "images": records,
    }
    (args.out / "manifest.json").write_text(dump_manifest(manifest))
    write_notice(args.out, manifest)
    print(f"{len(records)} images, {len(concepts)} concepts, {len(duplicates)} duplicated", file=sys.stderr)


def judge_pool(out: Path, files: dict, concepts: list[str], concept_aliases: set[str], records: list[dict],
               all_themes: dict) -> list[dict]:
    """Images for the judge alone (split "judge", or "reference" for held-out themes): appended after
    every other draw, with a generator of its own, so mini's training split is untouched by it."""
    rng = np.random.default_rng(SEED + 1)
    # no pool image may be a near-copy of a judge test image (another theme's copy of the same
    # drawing, a variant with a small emblem): that would leak the test split into training
    test = np.stack([np.asarray(Image.open(out / r["file"]).resize((JUDGE_POOL_SIZE,) * 2, Image.BOX),
                                dtype=np.float32).ravel() / 255 for r in records if r["judge_split"] == "test"])
    test_sq = (test ** 2).sum(1)
    seen_pixels = {r["sha256"] for r in records}
    seen_files = {os.path.realpath(ICON_ROOT / r["source"]) for r in records}
    pool: list[dict] = []

    def add(theme_dir: str, style: str | None, pkg: str, icon: str, concept: str | None, split: str) -> bool:
        path = best_file(files[theme_dir][icon])
        real = os.path.realpath(path)
        if real in seen_files:
            return False
        try:
            big = render(path)
        except (subprocess.CalledProcessError, OSError):
            return False
        im = big.resize((JUDGE_POOL_SIZE, JUDGE_POOL_SIZE), Image.BOX)
        digest = hashlib.sha256(big.tobytes()).hexdigest()
        if digest in seen_pixels or is_blank(big):
            return False
        v = np.asarray(im, dtype=np.float32).ravel() / 255
        mse = (test_sq - 2 * test @ v + (v ** 2).sum()) / v.size
        if 10 * np.log10(1 / max(float(mse.min()), 1e-10)) > NEAR_COPY_PSNR_DB:
            return False
        seen_files.add(real)
        seen_pixels.add(digest)
        folder = style or f"concept-only-{theme_dir.lower()}"
        rel = f"judge/{folder}/{re.sub(r'[^a-z0-9]+', '-', icon.lower())}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        im.save(out / rel, optimize=True)
        subject = concept or name_to_words(icon)
        pool.append({"file": rel, "theme": style, "package": pkg, "icon_name": icon,
                     "source": str(path.relative_to(ICON_ROOT)), "concept": concept,
                     "caption": f"{subject} icon, {style or theme_dir.lower()} style ({icon})", "sha256": digest,
                     "split": split, "judge_split": "train", "copies": 1})
        return True

    for theme, (style, pkg) in all_themes.items():
        names = sorted(n for n in files[theme] if n not in concept_aliases)
        taken = 0
        for j in rng.permutation(len(names)):
            if taken >= JUDGE_POOL_PER_THEME:
                break
            taken += add(theme, style, pkg, names[j], None, "reference" if theme in HELDOUT_THEMES else "judge")
        print(f"judge pool {style:12s} {taken:3d} more icons", file=sys.stderr)
    for theme in CONCEPT_ONLY_THEMES:
        if theme not in files:
            files[theme] = theme_files(theme)
        if not files[theme]:
            continue
        pkg = subprocess.run(["dpkg", "-S", str(ICON_ROOT / theme)], capture_output=True, text=True).stdout.split(":")[0]
        taken = 0
        for concept in concepts:
            alias = next((a for a in CONCEPTS[concept] if a in files[theme]), None)
            if alias:
                taken += add(theme, None, pkg, alias, concept, "judge")
        print(f"judge pool concept-only {theme:16s} {taken:3d} concept icons", file=sys.stderr)
    return pool


def dump_manifest(manifest: dict) -> str:
    """JSON with one image record per line: readable, and small diffs when the corpus changes."""
    head = {k: v for k, v in manifest.items() if k != "images"}
    lines = json.dumps(head, indent=1)[:-2] + ',\n "images": [\n'
    lines += ",\n".join("  " + json.dumps(r) for r in manifest["images"])
    return lines + "\n ]\n}\n"


def write_notice(out: Path, manifest: dict) -> None:
    lines = ["The icon corpus", "===============", "",
             "Every image here is a rendering of an icon drawn by the authors of a Debian icon-theme",
             "package, kept under that package's licence. The full Debian copyright file of each package",
             "is in licenses/. Images were rendered to 64x64 over white by scripts/build_corpus.py.", ""]
    for style, t in manifest["themes"].items():
        lic_file = out / "licenses" / f"{t['package']}.copyright"
        lics = sorted({ln.split(":", 1)[1].strip() for ln in lic_file.read_text(errors="replace").splitlines()
                       if ln.startswith("License:") and ln.split(":", 1)[1].strip()}) if lic_file.exists() else []
        n = sum(1 for r in manifest["images"] if r["theme"] == style)
        lines.append(f"- {style}: {n} images from theme '{t['directory']}', Debian package {t['package']} "
                     f"{t['version']}; licences named in its copyright file: {', '.join(lics) or 'see the file'}"
                     f"{' (held out from training)' if t['heldout'] else ''}")
    (out / "NOTICE").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
