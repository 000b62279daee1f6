"""Message Batches for non-urgent work: submit a list of requests as Anthropic batches, poll, keep every result."""

from .client import batch_client, batch_model
from .errors import BatchError, BatchNotReady, BatchNotSupported, BatchSubmitFailed, BatchTooLarge
from .handle import BatchHandle, BatchStatus, BatchTally
from .options import BatchOptions, Serve
from .split import BatchLimits, split
from .submit import resume, submit

__all__ = [
    "BatchError",
    "BatchHandle",
    "BatchLimits",
    "BatchNotReady",
    "BatchNotSupported",
    "BatchOptions",
    "BatchStatus",
    "BatchSubmitFailed",
    "BatchTally",
    "BatchTooLarge",
    "Serve",
    "batch_client",
    "batch_model",
    "resume",
    "split",
    "submit",
]
