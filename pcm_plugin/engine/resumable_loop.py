"""An epoch-based training loop that resumes mid-epoch where it stopped.

mmengine's ``EpochBasedTrainLoop`` restores the iteration counter from an
iteration checkpoint but then replays the whole interrupted epoch: a run
of 20 iterations resumed at 15 trains 25 (the schedule and the ETA go
past their end), and the batches seen differ from an uninterrupted run.
This loop skips the batches the interrupted run already trained on, at
the sampler (no data is read for them), so that with
:class:`~pcm_plugin.engine.RNGStateHook` a run resumed from any
iteration checkpoint ends on the uninterrupted run's weights bit for bit
on CPU (test: ``tests/test_engine/test_exact_resume.py``).

A checkpoint also records the run's batch layout (batches per epoch,
batch size, processes). Resuming with another layout at an epoch boundary
continues with a warning (the iteration counter is rebased to the new
layout); mid-epoch it is refused, because no batch of the new layout
starts where the old run stopped.

Use it with ``train_cfg = dict(type='ResumableEpochBasedTrainLoop',
max_epochs=..., val_interval=...)`` (our configs do).
"""
from typing import Iterator

from mmengine.dist import get_world_size
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader, Sampler

from pcm_plugin.registry import LOOPS

from .rng_state_hook import rng_states, set_rng_states

# Where a checkpoint's message hub keeps the layout of the run that wrote it.
LAYOUT_KEY = 'train_layout'


class _SkipFirstBatches(Sampler):
    """A batch sampler without its first ``skip`` batches."""

    def __init__(self, batch_sampler, skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self) -> Iterator:
        batches = iter(self.batch_sampler)
        for _ in range(self.skip):
            next(batches, None)  # indices only: no sample is loaded
        yield from batches

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)


def _loader_without_first_batches(loader: DataLoader,
                                  skip: int) -> DataLoader:
    """The same loader (dataset, workers, collation, seed source) for one
    partial epoch that starts at batch ``skip``."""
    return DataLoader(
        loader.dataset,
        batch_sampler=_SkipFirstBatches(loader.batch_sampler, skip),
        num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator, prefetch_factor=loader.prefetch_factor,
        persistent_workers=False)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` whose resumed epoch starts at the batch after
    the checkpoint's, not at the epoch's first batch.

    Takes the arguments of mmengine's ``EpochBasedTrainLoop``.
    """

    def layout(self) -> dict:
        """What fixes which samples a batch holds: a resume point is
        replayable exactly only under the same layout."""
        batch_size = self.dataloader.batch_sampler.batch_size \
            if self.dataloader.batch_sampler is not None else None
        return dict(batches_per_epoch=len(self.dataloader),
                    batch_size=batch_size, world_size=get_world_size(),
                    dataset_size=len(self.dataloader.dataset))

    def run(self):
        """Check a resumed run's layout against its checkpoint's, then
        train."""
        hub = self.runner.message_hub
        saved = hub.get_info(LAYOUT_KEY) if self._iter > 0 else None
        current = self.layout()
        if saved is not None and saved != current:
            self._rebase_to(saved, current)
        hub.update_info(LAYOUT_KEY, current)
        return super().run()

    def _rebase_to(self, saved: dict, current: dict) -> None:
        """Continue at the same sample position under a new layout, or
        refuse (``ValueError``) when no batch of it starts there."""
        changed = ', '.join(f'{key} {saved.get(key)} -> {current[key]}'
                            for key in current
                            if saved.get(key) != current[key])
        done = self._iter - self._epoch * saved['batches_per_epoch']
        if done != 0:
            raise ValueError(
                f'--resume: the checkpoint stopped at batch {done} of '
                f'{saved["batches_per_epoch"]} in epoch {self._epoch + 1}, '
                f'and this run\'s layout differs ({changed}): its batches '
                'would not replay the same samples. Resume with the '
                'checkpoint\'s batch size and number of processes, or from '
                f'the epoch checkpoint epoch_{self._epoch}.pth')
        rebased = self._epoch * current['batches_per_epoch']
        self.runner.logger.warning(
            f'Resuming at the start of epoch {self._epoch + 1} with another '
            f'layout ({changed}): the iteration counter goes from '
            f'{self._iter} to {rebased}, and schedules by iteration '
            'continue from there; the run will not equal an uninterrupted '
            'one')
        self._iter = rebased

    def batches_done_in_epoch(self) -> int:
        """Batches of the current epoch trained before a resume (0 when
        the run starts an epoch normally)."""
        return self._iter - self._epoch * len(self.dataloader)

    def run_epoch(self) -> None:
        """Iterate one epoch, or what an interrupted run left of it."""
        done = self.batches_done_in_epoch()
        if done <= 0:
            return super().run_epoch()
        self.runner.logger.info(
            f'Resuming epoch {self._epoch + 1} at batch {done + 1} of '
            f'{len(self.dataloader)}: the first {done} were trained before '
            'the checkpoint')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        loader = _loader_without_first_batches(self.dataloader, done)
        # The uninterrupted run drew the data loader's base seed from the
        # global generator when the epoch began, before the checkpoint's
        # generator states were saved; drawing it again would shift every
        # later dropout mask and noise sample.
        states = rng_states()
        batches = iter(loader)
        set_rng_states(states)
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
