"""Remember the text of document attachments by their bytes, so each one is extracted once.

The same PDF, Word or Excel file reaches an archive many times: forwarded, sent to many
recipients as separate messages, journaled once per direction, re-sent with each version
of a thread. Reading its text is the costliest step of indexing (PDFium lays out every
page), while hashing its bytes costs about a millisecond per megabyte. Only kinds whose
text depends on nothing but their bytes and the limits are kept: PDF, DOCX and XLSX.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from indexer.extraction.extracted import Extracted
from indexer.extraction.kinds import Kind
from indexer.extraction.limits import ExtractionLimits

# Below this an attachment is re-read faster than it is hashed and looked up.
_SMALLEST_WORTH_KEEPING = 4 * 1024


@dataclass
class MemoStats:
    hits: int = 0
    misses: int = 0


class ExtractionMemo:
    """A least-recently-used map from (kind, SHA-256 of the bytes, limits) to what was extracted,
    bounded by the memory its texts take. Safe to share between threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.stats = MemoStats()
        self._entries: OrderedDict[tuple[Kind, bytes, ExtractionLimits], tuple[Extracted, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def extracted(self, kind: Kind, data: bytes, limits: ExtractionLimits, extract: Callable[[], Extracted]) -> Extracted:
        """``extract()``'s result for these bytes, from memory when they were seen before."""
        if self.max_bytes <= 0 or len(data) < _SMALLEST_WORTH_KEEPING:
            return extract()
        key = (kind, hashlib.sha256(data).digest(), limits)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return found[0]
            self.stats.misses += 1
        # Extracted outside the lock: two threads meeting the same new file may both read it,
        # which costs time once but never blocks one thread behind another's PDF.
        result = extract()
        self._keep(key, result)
        return result

    def _keep(self, key: tuple[Kind, bytes, ExtractionLimits], result: Extracted) -> None:
        size = sys.getsizeof(result.text) + sum(sys.getsizeof(defect) for defect in result.defects) + 200
        if size > self.max_bytes // 4:  # one huge text would push out everything else
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (result, size)
            self._held += size
            self._evict_beyond(self.max_bytes)

    def resize(self, max_bytes: int) -> None:
        """A new budget, applied at once (0 or less: keep nothing)."""
        with self._lock:
            self.max_bytes = max_bytes
            self._evict_beyond(max(max_bytes, 0))

    def _evict_beyond(self, budget: int) -> None:
        # The least recently used go first; called with the lock held.
        while self._held > budget:
            _evicted, (_result, evicted_size) = self._entries.popitem(last=False)
            self._held -= evicted_size


_shared: ExtractionMemo | None = None
_shared_lock = threading.Lock()


def shared_memo(max_bytes: int) -> ExtractionMemo:
    """This process's memo (every parser of a process shares one), resized to ``max_bytes``."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ExtractionMemo(max_bytes)
        elif _shared.max_bytes != max_bytes:
            _shared.resize(max_bytes)
        return _shared


__all__ = ["ExtractionMemo", "MemoStats", "shared_memo"]
