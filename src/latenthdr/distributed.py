"""Sharing work between the processes of one launch (``accelerate launch``, ``torchrun``, ``mpirun``): which process
this is, its share of a list or of a batch's rows, the results of every process, waiting for each other.

Two kinds of work: independent items, such as those of ``latenthdr generate --prompts`` and ``latenthdr convert
IN_DIR``, whose every item depends only on itself (its input, or its prompt and seed), so the files are the same
whatever the number of processes (:class:`Processes`); and the rows of a data-parallel training batch
(:func:`batch_share`; ``training.loop`` runs accelerate's ``Accelerator``). docs/scale-out.md has the commands.

Outside a launch (one process) nothing here imports accelerate or starts a process group: a plain run works as it
always did. Under a launch with several processes, accelerate's ``PartialState`` starts the process group (gloo
on CPU, NCCL on GPUs) and ``split_between_processes`` gives each process a contiguous share of a list (shares
differ by at most one item; a process may get none).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# What launchers set: torchrun / accelerate launch, Intel MPI, Open MPI, MVAPICH (as accelerate reads them)
_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _from_environment(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_processes() -> int:
    """How many processes the launch that started this one has (1 outside a launch), from the environment."""
    return max(1, _from_environment(_SIZE_VARIABLES, 1))


def is_main_process() -> bool:
    """Whether this is its launch's main process (rank 0; True outside a launch), from the environment: for the
    command line, which reports once (a training job's ``Accelerator`` holds the same answer)."""
    return launched_processes() <= 1 or _from_environment(_RANK_VARIABLES, 0) == 0


@dataclass(frozen=True)
class Processes:
    """This process among those of its launch: ``index`` (0 = the main process) of ``count``; ``state``: the
    ``accelerate.PartialState`` when there are several, else None."""

    index: int = 0
    count: int = 1
    state: object = None

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def device(self, requested: str) -> str:
        """Where this process computes: ``requested`` ("cpu", "cuda", "cuda:N", ...), with a bare "cuda" under
        a launch of several processes read as this process's own GPU (accelerate's device: cuda:LOCAL_RANK)."""
        if self.state is not None and requested == "cuda":
            return str(self.state.device)
        return requested

    def split(self, items: list) -> list:
        """This process's contiguous share of ``items`` (all of them for one process)."""
        if self.state is None:
            return list(items)
        with self.state.split_between_processes(list(items)) as share:
            return list(share)

    def gather(self, values: list) -> list:
        """Every process's ``values`` (picklable), concatenated in process order, on every process; with
        :meth:`split`'s shares that is the order of the list that was split."""
        if self.state is None:
            return list(values)
        from accelerate.utils import gather_object

        return list(gather_object(list(values)))

    def wait(self) -> None:
        """Return when every process has come here (nothing with one process)."""
        if self.state is not None:
            self.state.wait_for_everyone()


def processes(cpu: bool = True) -> Processes:
    """This process among those of its launch; with several, starts their process group (``cpu``: gloo, else the
    accelerator's backend, NCCL on NVIDIA GPUs), closed when the process exits (:func:`close_at_exit`). Call it
    before any work that the processes share."""
    if launched_processes() <= 1:
        return Processes()
    from accelerate import PartialState

    close_at_exit()
    state = PartialState(cpu=cpu)
    return Processes(state.process_index, state.num_processes, state)


_CLOSING: list[bool] = []


def close_at_exit() -> None:
    """Under a launch, destroy the default process group (if one was started) when the interpreter exits, before
    its threads are torn down: a process that exits with it open can abort on the way out ("terminate called
    without an active exception", SIGABRT), which turns a finished command into a failed one. Once per process."""
    if launched_processes() <= 1 or _CLOSING:
        return
    import atexit

    _CLOSING.append(True)
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class BatchShare:
    """This process's share of a data-parallel training batch (``training.loop``): ``rows`` (a slice of the
    batch's rows), the ``fraction`` of the rows it holds, and whether it holds them all (``whole``: one process).
    Losses are tensors; ``whole`` returns them untouched, so one process computes exactly what it always did."""

    rows: slice
    fraction: float
    whole: bool

    def part(self, loss):
        """This process's part of a loss that is a mean over the batch's rows, from ``loss``, the mean over its own
        rows (rows of one size: the parts of all processes sum to the batch's mean); ``loss`` itself when whole."""
        return loss if self.whole else loss * self.fraction

    def own(self, loss):
        """This process's part of a loss that sums over its rows and is divided by a whole-batch normaliser:
        ``loss`` itself, or 0 x it for a borrowed row (``fraction`` 0)."""
        return loss if self.whole or self.fraction > 0 else loss * 0.0


def batch_share(n_rows: int, accelerator) -> BatchShare:
    """The contiguous rows of a batch of ``n_rows`` that process ``process_index`` of ``num_processes`` computes
    (as ``split_between_processes`` splits a list: shares differ by at most one row). A process left without a
    row (a batch from a group smaller than the process count) gets one row with ``fraction`` 0: it runs the
    network, as DDP needs, and adds nothing to the loss or the gradient."""
    count, index = accelerator.num_processes, accelerator.process_index
    if count == 1:
        return BatchShare(slice(0, n_rows), 1.0, True)
    start, stop = index * n_rows // count, (index + 1) * n_rows // count
    if start == stop:
        start = min(start, n_rows - 1)
        return BatchShare(slice(start, start + 1), 0.0, False)
    return BatchShare(slice(start, stop), (stop - start) / n_rows, False)


def check_batch_split(batch_size: int, accelerator, argument: str = "batch_size") -> None:
    """InputError naming ``argument`` unless every process gets at least one row of a batch of ``batch_size``."""
    from latenthdr.errors import InputError

    if batch_size < accelerator.num_processes:
        raise InputError(argument, f"got {batch_size}; accepted: at least the number of processes "
                                   f"({accelerator.num_processes}), the batch being shared between them (a multiple of "
                                   "it keeps every process equally busy)")
