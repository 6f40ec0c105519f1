"""Downloads of pretrained weights: failures remembered for a day, and short notices.

posecli downloads a few pretrained files on first use (torchvision's VGG16 and
ResNet-18, LPIPS's AlexNet, rembg's U^2-Net). Where that is impossible (no
network, a proxy), each run would try again, print torch's ``Downloading: ...``
line and a long fallback notice. Instead:

- a failed download is remembered in the user cache folder
  (``platformdirs.user_cache_dir("posecli")/download-failures.json``, or
  ``$POSECLI_CACHE_DIR/download-failures.json``) and not tried
  again for a day, unless ``POSECLI_RETRY_DOWNLOADS=1`` (or the file is put in place);
  ``POSECLI_OFFLINE=1`` never downloads at all;
- the notice that a fallback is used is one short line; where to put the file
  (the full text) is shown with ``-v``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("posecli")

RETRY_ENV = "POSECLI_RETRY_DOWNLOADS"
RETRY_AFTER_S = 24 * 3600


CACHE_ENV = "POSECLI_CACHE_DIR"


def cache_dir() -> Path:
    """posecli's cache folder: $POSECLI_CACHE_DIR, else the platform's user cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from platformdirs import PlatformDirs

    return Path(PlatformDirs("posecli", appauthor=False).user_cache_path)


def failures_file() -> Path:
    return cache_dir() / "download-failures.json"


def _load() -> dict:
    try:
        data = json.loads(failures_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(data: dict) -> None:
    from .fileio import write_bytes_atomic

    try:
        write_bytes_atomic(failures_file(), (json.dumps(data, indent=1) + "\n").encode(), overwrite=True)
    except Exception as e:  # a read-only home must not stop the work: the memory is a convenience
        log.debug(f"cannot remember the failed download in {failures_file()}: {e}")


def retry_forced() -> bool:
    return os.environ.get(RETRY_ENV, "") not in ("", "0")


def recent_failure(url: str) -> str | None:
    """"download failed 2 h ago: URLError; not tried again ..." when ``url`` failed within the last day
    (and POSECLI_RETRY_DOWNLOADS is not set), else None: then try."""
    if retry_forced():
        return None
    entry = _load().get(url)
    if not isinstance(entry, dict):
        return None
    age = time.time() - float(entry.get("time", 0))
    if not 0 <= age < RETRY_AFTER_S:
        return None
    ago = f"{age / 3600:.0f} h" if age >= 3600 else f"{max(1, age // 60):.0f} min"
    return (f"download failed {ago} ago: {entry.get('reason', 'error')}; not tried again for a day "
            f"unless {RETRY_ENV}=1")


def record_failure(url: str, reason: str) -> None:
    data = _load()
    data[url] = {"time": time.time(), "reason": reason[:200]}
    _save(data)


def forget_failure(url: str) -> None:
    data = _load()
    if data.pop(url, None) is not None:
        _save(data)


def fallback_notice(short: str, full: str) -> None:
    """One short line at the default level (``-q`` silences it); the full text (which
    file, where to put it) with ``-v``."""
    log.warning(f"{short} (-v: how to get the file)" if full and full != short else short)
    if full and full != short:
        log.info(full)
