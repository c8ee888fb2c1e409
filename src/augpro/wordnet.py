"""Offline WordNet for the synonym and EDA augmenters.

WordNet's data is not on PyPI, and augpro never downloads anything. :func:`ensure_wordnet` makes
NLTK's WordNet reader work from what the machine already has, in this order:

1. an NLTK WordNet that already loads (``nltk.data.path``, ``$NLTK_DATA``): used as it is;
2. a WordNet database folder (Debian's ``wordnet-base`` + ``wordnet-sense-index`` packages put
   WordNet 3.0 in ``/usr/share/wordnet``; ``$WNSEARCHDIR`` / ``$WNHOME/dict`` are honoured too):
   its files are *copied* (recent NLTK resolves symlinks and refuses corpus roots outside
   ``nltk.data.path``) into ``<augpro cache>/nltk_data/corpora/wordnet/`` together with the
   ``lexnames`` file NLTK needs and Debian lacks, and that ``nltk_data`` folder is put first on
   ``nltk.data.path``.

Otherwise it raises :class:`~augpro.errors.UserError` saying what to install.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from pathlib import Path

from augpro.cache import cache_dir
from augpro.errors import UserError

#: WordNet's 45 lexicographer files: number, name, syntactic category (1 noun, 2 verb,
#: 3 adjective, 4 adverb), as listed in lexnames(5WN). The list is fixed since WordNet 3.0.
LEXNAMES: tuple[tuple[int, str, int], ...] = (
    (0, "adj.all", 3),
    (1, "adj.pert", 3),
    (2, "adv.all", 4),
    (3, "noun.Tops", 1),
    (4, "noun.act", 1),
    (5, "noun.animal", 1),
    (6, "noun.artifact", 1),
    (7, "noun.attribute", 1),
    (8, "noun.body", 1),
    (9, "noun.cognition", 1),
    (10, "noun.communication", 1),
    (11, "noun.event", 1),
    (12, "noun.feeling", 1),
    (13, "noun.food", 1),
    (14, "noun.group", 1),
    (15, "noun.location", 1),
    (16, "noun.motive", 1),
    (17, "noun.object", 1),
    (18, "noun.person", 1),
    (19, "noun.phenomenon", 1),
    (20, "noun.plant", 1),
    (21, "noun.possession", 1),
    (22, "noun.process", 1),
    (23, "noun.quantity", 1),
    (24, "noun.relation", 1),
    (25, "noun.shape", 1),
    (26, "noun.state", 1),
    (27, "noun.substance", 1),
    (28, "noun.time", 1),
    (29, "verb.body", 2),
    (30, "verb.change", 2),
    (31, "verb.cognition", 2),
    (32, "verb.communication", 2),
    (33, "verb.competition", 2),
    (34, "verb.consumption", 2),
    (35, "verb.contact", 2),
    (36, "verb.creation", 2),
    (37, "verb.emotion", 2),
    (38, "verb.motion", 2),
    (39, "verb.perception", 2),
    (40, "verb.possession", 2),
    (41, "verb.social", 2),
    (42, "verb.stative", 2),
    (43, "verb.weather", 2),
    (44, "adj.ppl", 3),
)

#: files without which NLTK's reader cannot work
_CORE_FILES = tuple(f"{kind}.{pos}" for pos in ("adj", "adv", "noun", "verb") for kind in ("index", "data")) + (
    "adj.exc", "adv.exc", "noun.exc", "verb.exc")
#: files NLTK opens only for some queries (sense keys, lemma counts): copied when present
_OPTIONAL_FILES = ("index.sense", "cntlist.rev")

INSTALL_HINT = ("WordNet not found: run `apt-get install -y wordnet-base wordnet-sense-index` (as root), "
                "or set NLTK_DATA to a folder holding corpora/wordnet")

_lock = threading.Lock()
_ready = False


def lexnames_text() -> str:
    """The ``lexnames`` file: one tab-separated line per lexicographer file."""
    return "".join(f"{num:02d}\t{name}\t{cat}\n" for num, name, cat in LEXNAMES)


def nltk_data_dir() -> Path:
    """augpro's own ``nltk_data`` folder (``<cache_dir()>/nltk_data``)."""
    return cache_dir() / "nltk_data"


def _source_dirs() -> list[Path]:
    """Folders that may hold a WordNet database (``index.noun``, ``data.noun``, ...)."""
    dirs: list[Path] = []
    if os.environ.get("WNSEARCHDIR"):
        dirs.append(Path(os.environ["WNSEARCHDIR"]))
    if os.environ.get("WNHOME"):
        dirs.append(Path(os.environ["WNHOME"]) / "dict")
    dirs += [Path("/usr/share/wordnet"), Path("/usr/local/share/wordnet"), Path("/usr/local/WordNet-3.0/dict")]
    return dirs


def _is_complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / name).is_file() for name in (*_CORE_FILES, "lexnames"))


def _nltk_wordnet_root():
    """The root NLTK's ``wordnet`` loader would use, if it holds every core file; else ``None``."""
    import nltk

    for resource in ("corpora/wordnet.zip/wordnet/", "corpora/wordnet"):
        try:
            root = nltk.data.find(resource)
            for name in (*_CORE_FILES, "lexnames"):
                root.join(name)  # raises when the entry is missing
            return root
        except (LookupError, OSError, ValueError):
            continue
    return None


def _install(source: Path, target: Path) -> None:
    """Copy a WordNet database into ``target`` (atomically: a staged folder renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the copy is public data
        for name in (*_CORE_FILES, *_OPTIONAL_FILES):
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a broken earlier copy is replaced
        try:
            os.rename(staging, target)
        except OSError:
            if not _is_complete(target):  # another process won the race with a good copy: fine
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def ensure_wordnet() -> None:
    """Make ``nltk.corpus.wordnet`` load offline; cheap after the first call.

    Uses an NLTK WordNet that already works; otherwise copies a WordNet database (Debian:
    ``/usr/share/wordnet``) into augpro's cache with NLTK's ``lexnames`` file and puts that
    folder first on ``nltk.data.path``. Never downloads.

    Raises:
        UserError: no WordNet on this machine (the message says what to install).
    """
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader

        if not isinstance(nltk.corpus.wordnet, WordNetCorpusReader) and _nltk_wordnet_root() is None:
            data_dir = nltk_data_dir()
            target = data_dir / "corpora" / "wordnet"
            if not _is_complete(target):
                source = next((d for d in _source_dirs()
                               if all((d / name).is_file() for name in _CORE_FILES)), None)
                if source is None:
                    raise UserError(INSTALL_HINT)
                try:
                    _install(source, target)
                except OSError as exc:
                    raise UserError(f"cannot copy WordNet from {source} into {target}: {exc}; "
                                    f"set AUGPRO_CACHE to a writable folder") from None
            if str(data_dir) not in nltk.data.path:
                nltk.data.path.insert(0, str(data_dir))
        try:
            nltk.corpus.wordnet.ensure_loaded()
        except LookupError:
            raise UserError(INSTALL_HINT) from None
        _ready = True


@functools.lru_cache(maxsize=1 << 18)
def synonyms(word: str) -> tuple[str, ...]:
    """WordNet synonyms of ``word`` over all its synsets and parts of speech.

    Lowercased lemma names with underscores turned into spaces, the word itself excluded,
    deduplicated and sorted (deterministic). Empty for words WordNet does not know.
    """
    ensure_wordnet()
    from nltk.corpus import wordnet

    key = word.lower()
    if not key.strip():
        return ()
    names = {name.lower().replace("_", " ") for synset in wordnet.synsets(key) for name in synset.lemma_names()}
    names.discard(key)
    return tuple(sorted(names))


__all__ = ["LEXNAMES", "ensure_wordnet", "lexnames_text", "nltk_data_dir", "synonyms"]
