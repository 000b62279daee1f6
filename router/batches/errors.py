"""The typed errors of Message Batches: a model that cannot take batches, a request too large, a failed submit."""

from __future__ import annotations

from ..errors import RouterError


class BatchError(RouterError):
    """Base class of the Message Batches errors (a batch the API no longer knows, a refused poll, ...)."""


class BatchNotSupported(BatchError, TypeError):
    """The model chosen for a batch is not served through the anthropic SDK (litellm models take no batches)."""

    def __init__(self, alias: str, provider: str) -> None:
        self.alias = alias
        self.provider = provider
        super().__init__(
            f"model {alias!r} uses provider {provider!r}: only anthropic models can take Message Batches; "
            "pass model= an anthropic model of the policy, or put one in the route"
        )


class BatchTooLarge(BatchError, ValueError):
    """One request alone exceeds the per-batch byte limit: no batch can hold it."""

    def __init__(self, index: int, size: int, limit: int) -> None:
        self.index = index
        self.size = size
        self.limit = limit
        super().__init__(f"request {index} is {size} bytes as JSON, over the {limit}-byte limit of one batch; "
                         "send it with Router.complete() instead")


class BatchSubmitFailed(BatchError):
    """Creating a batch failed. `.submitted` is the handle of the parts that were created before (None if
    none was): those are durable and will complete; `.unsent` requests were not submitted at all."""

    def __init__(self, reason: str, submitted: object | None, unsent: int) -> None:
        self.submitted = submitted
        self.unsent = unsent
        head = f"creating a Message Batch failed ({reason}); {unsent} requests were not submitted"
        super().__init__(head + ("; the parts created before are kept" if submitted is not None else ""))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), None, self.unsent))


class BatchNotReady(BatchError, TimeoutError):
    """`wait(timeout=...)` ran out before every part of the batch ended; polling can go on later."""

    def __init__(self, batch_id: str, status: str, timeout: float) -> None:
        self.batch_id = batch_id
        self.status = status
        super().__init__(f"batch {batch_id} is still {status} after {timeout:g}s; its requests stay batched")
