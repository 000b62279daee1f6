"""Matching a taking-over model's opening text against all the text the caller already has (pure text, no events).

A model that takes a broken stream over may continue exactly where the text stopped, repeat the last few
words first, restart the whole answer, or restart it after a short preamble of its own ("Sure, here it
is: "). `TextMatch` is fed the takeover's text piece by piece and says, as soon as it can tell, how many
of its first chars are a repeat to drop. Until then the driver holds that text back.

Each hypothesis is a candidate (j, p): "the takeover's text from char j repeats the sent text from char
p to its end, then goes on". (0, p) is a continuation that repeats the last len(sent) - p chars (p = 0:
a full restart; p = len(sent): a plain continuation, always possible); (j, 0) with 0 < j <= PREAMBLE_MAX
is a restart after a j-char preamble. A candidate is live while the text matches and has not reached the
end of the sent text yet, complete once it has. The complete candidate that repeats the most wins, as
soon as no live candidate (nor, within the preamble bound, one still to start) could repeat more. Every
candidate is complete or dead once len(sent) + PREAMBLE_MAX chars have been fed, so the hold is bounded.
"""

from __future__ import annotations

PREAMBLE_MAX = 200  # a restart may open with at most this many chars of its own
PREAMBLE_MIN_SENT = 8  # sent text shorter than this is never looked for behind a preamble
SHORT_SENT = 32  # up to this length, only behind a preamble that ends like one (":", "!", a line break)
LONG_REPEAT = 16  # an overlap this long counts even inside a word; a cut-off repeat this long is dropped
MAX_OVERLAPS = 64  # live overlap candidates kept: half nearest each end of the sent text

Candidate = tuple[int, int]


class TextMatch:
    """How a takeover's text joins the sent text: feed() until it returns True, or force(); then `dropped`."""

    __slots__ = ("best", "diverged", "dropped", "head", "length", "live", "note", "preambles", "sent")

    def __init__(self, sent: str, preambles: bool = True) -> None:
        self.sent = sent
        self.length = 0  # chars fed so far
        self.head = ""  # the first PREAMBLE_MAX chars fed (a preamble is judged by how it ends)
        self.live: dict[Candidate, int] = {}  # live candidate -> the next position of `sent` it must match
        self.best: Candidate = (0, len(sent))  # the complete candidate that repeats the most
        self.preambles = preambles and len(sent) >= PREAMBLE_MIN_SENT
        self.diverged = 0  # the longest repeat that turned out not to be one
        self.dropped: int | None = None  # once decided: how many leading chars of the takeover's text to drop
        self.note = ""

    def feed(self, text: str) -> bool:
        """The takeover's next piece of text; True once decided."""
        if self.dropped is not None:
            return True
        if not text:
            return False
        start = self.length
        if start == 0:
            self._open_overlaps(text)
        else:
            live, self.live = self.live, {}
            for candidate, at in live.items():
                self._step(candidate, at, text)
        if self.preambles and start <= PREAMBLE_MAX:
            self._open_preambles(text, start)
            self.head += text[: PREAMBLE_MAX - len(self.head)]
        self.length += len(text)
        return self._settle()

    def force(self) -> None:
        """Decide now (the takeover's text ended, or something else began): a cut-off repeat of at least
        LONG_REPEAT chars is dropped whole; anything shorter is taken as new text."""
        if self.dropped is not None:
            return
        best_repeat = len(self.sent) - self.best[1]
        longest = max((at - p for (_, p), at in self.live.items()), default=0)
        if longest >= LONG_REPEAT and longest > best_repeat:
            self.dropped = self.length
            self.note = f"takeover repeated {longest} chars of the text sent, then stopped: dropped"
            return
        self._decide(self.best)

    # -- candidates -------------------------------------------------------------------------------

    def _open_overlaps(self, text: str) -> None:
        """The first piece: every position of the sent text it may repeat from (to the end of it)."""
        sent, n, m = self.sent, len(self.sent), len(text)
        found = []
        p = sent.find(text)
        while p != -1:  # the whole piece lies inside the sent text: live (or complete, at the very end)
            if self._eligible(p):
                found.append(p)
            p = sent.find(text, p + 1)
        found += (p for p in range(max(0, n - m + 1), n) if sent.startswith(text[: n - p], p) and self._eligible(p))
        if len(found) > MAX_OVERLAPS:
            found = sorted(found)
            found = found[: MAX_OVERLAPS // 2] + found[-MAX_OVERLAPS // 2 :]
        for p in found:
            self._step((0, p), p, text)

    def _eligible(self, p: int) -> bool:
        """Today's overlap rules: a repeat counts if it is whitespace only, long, or starts at a word
        boundary; a short match inside a word ("Hell" + "lo") is new text."""
        sent = self.sent
        if p == 0 or len(sent) - p >= LONG_REPEAT:
            return True
        return not (sent[p - 1].isalnum() and sent[p].isalnum()) or sent[p:].strip() == ""

    def _open_preambles(self, text: str, start: int) -> None:
        """Restarts after a preamble that would begin inside this piece (at a word boundary)."""
        first = self.sent[0]
        limit = PREAMBLE_MAX + 1 - start
        i = text.find(first, 0, limit)
        while i != -1:
            at = start + i
            before = text[i - 1] if i else (self.head[-1:] or " ")
            if at > 0 and not before.isalnum() and self._looks_like_preamble(self.head + text[:i]):
                self._step((at, 0), 0, text[i:])
            i = text.find(first, i + 1, limit)

    def _looks_like_preamble(self, preamble: str) -> bool:
        if len(self.sent) >= SHORT_SENT:
            return True
        return preamble.rstrip(" \t").endswith((":", "!", "\n"))

    def _step(self, candidate: Candidate, at: int, piece: str) -> None:
        """Match `piece` against the sent text from `at` for one candidate: it stays live, completes or dies."""
        sent = self.sent
        rest = len(sent) - at
        if len(piece) < rest:
            if sent.startswith(piece, at):
                self.live[candidate] = at + len(piece)
                return
        elif sent.startswith(piece[:rest], at):
            j, p = candidate
            best_j, best_p = self.best
            if p < best_p or (p == best_p and j < best_j):
                self.best = candidate
            return
        self.diverged = max(self.diverged, at - candidate[1])

    def _settle(self) -> bool:
        n = len(self.sent)
        best_p = self.best[1]
        if self.length <= n + PREAMBLE_MAX:  # the hard bound: past it, every candidate has been judged
            if any(p < best_p for _, p in self.live):
                return False  # a longer repeat may still complete
            if self.preambles and best_p > 0 and self.length <= PREAMBLE_MAX:
                return False  # a preamble may still be followed by the whole sent text
        self._decide(self.best)
        return True

    def _decide(self, candidate: Candidate) -> None:
        j, p = candidate
        n = len(self.sent)
        self.dropped = j + n - p
        self.live = {}
        if p == n:
            self.note = ("takeover did not match the text sent: appended as a continuation"
                         if self.diverged >= LONG_REPEAT else f"takeover continued at char {n}")
        elif j == 0 and p == 0:
            self.note = f"takeover restarted its answer: {n} repeated chars dropped"
        elif j == 0:
            self.note = f"takeover continued at char {p}: {n - p} repeated chars dropped"
        else:
            self.note = f"takeover restarted its answer after a {j}-char preamble: {n} repeated chars dropped"
