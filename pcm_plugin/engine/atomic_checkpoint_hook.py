"""Checkpoint rotation that a kill can never leave without a checkpoint.

mmengine's ``CheckpointHook`` deletes the oldest kept checkpoint *before*
writing the new one, writes the new one in place and then points
``last_checkpoint`` at it: with ``max_keep_ckpts=1``, a kill during the
save leaves a cut-short file, no older one, and ``last_checkpoint`` naming
the broken file — the whole run is lost. This hook writes the new
checkpoint under a temporary name, renames it into place, rewrites
``last_checkpoint`` atomically, and only then deletes what the rotation
drops.

It can also write *resume points* inside epochs (``resume_interval``): a
COCO epoch is thousands of iterations, and a preemption must not cost one.
"""
import glob
import os
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from pcm_plugin.registry import HOOKS
from pcm_plugin.utils.fileio import (
    atomic_path,
    remove_stale_temp_files,
    replace_into,
    temp_name,
)
from pcm_plugin.utils.keywords import check_keywords, named_keywords

RESUME_POINT_TMPL = 'iter_{}.pth'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with write-then-rename and delete-after-save.

    Args:
        resume_interval (int, optional): With ``by_epoch=True``, also save
            a resume point ``iter_{n}.pth`` every this many iterations
            (only the newest is kept; the next epoch checkpoint replaces
            it). ``--resume`` continues from it mid-epoch with
            ``ResumableEpochBasedTrainLoop``. Defaults to None (off).
        **kwargs: The named arguments of mmengine's ``CheckpointHook``
            (local files); any other key is refused at once.
    """

    def __init__(self, *, resume_interval: Optional[int] = None,
                 **kwargs) -> None:
        # mmengine forwards unknown keys to every save: a typo such as
        # max_keep_ckpt=1 would fail only at the first checkpoint.
        check_keywords('AtomicCheckpointHook (default_hooks.checkpoint)',
                       kwargs, named_keywords(CheckpointHook.__init__)
                       | {'resume_interval'})
        super().__init__(**kwargs)
        if resume_interval is not None and (
                not self.by_epoch or resume_interval < 1):
            raise ValueError(
                'AtomicCheckpointHook: resume_interval needs by_epoch=True '
                'and a positive number of iterations (with by_epoch=False '
                'the checkpoints are iteration-based already: use interval)')
        self.resume_interval = resume_interval

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            # Only saves whose process is gone: a live one may be another
            # run's save in progress.
            swept = remove_stale_temp_files(self.out_dir)
            if swept:
                runner.logger.info(
                    f'Removed {len(swept)} checkpoint(s) a killed save left '
                    f'half-written: {", ".join(map(osp.basename, swept))}')

    def _save_checkpoint_with_step(self, runner, step, meta):
        drop = []
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                drop.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write(runner, filename, meta, by_epoch=self.by_epoch)
        if not is_main_process():
            return
        for old in drop:  # only now that the new one is complete
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if (self.resume_interval and self.by_epoch
                and self.every_n_train_iters(runner, self.resume_interval)
                and not self.end_of_epoch(runner.train_dataloader,
                                          batch_idx)):
            step = runner.iter + 1
            runner.logger.info(f'Saving a resume point at {step} iterations')
            self._write(runner, RESUME_POINT_TMPL.format(step),
                        dict(epoch=runner.epoch, iter=step), by_epoch=False)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's best-checkpoint logic, made safe against a kill.

        mmengine removes the previous best and then writes the new one in
        place: a kill in between leaves no best checkpoint, or a cut-short
        one. Its selection rules are kept as they are; only its two file
        operations are redirected while it runs: the save goes through
        :meth:`_atomic_save`, and removals wait until it has finished.
        """
        removals = []
        runner.save_checkpoint = lambda out_dir, filename, *args, **kwargs: \
            self._atomic_save(runner, filename, *args, **kwargs)
        self.file_backend.remove = removals.append
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del runner.save_checkpoint  # the class's method again
            del self.file_backend.remove
        # mmengine keeps one path, or one per indicator when there are more.
        kept = {getattr(self, 'best_ckpt_path', None),
                *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for path in removals:
            if is_main_process() and path not in kept and osp.isfile(path):
                os.remove(path)

    def _atomic_save(self, runner, filename: str, *args, **kwargs) -> str:
        """``runner.save_checkpoint`` under a temporary name, renamed into
        ``out_dir/filename`` once complete; returns that path."""
        tmp_name = temp_name(filename)
        path = osp.join(self.out_dir, filename)
        tmp = osp.join(self.out_dir, tmp_name)
        try:
            # The class's method: the instance's may be redirected here.
            type(runner).save_checkpoint(runner, self.out_dir, tmp_name,
                                         *args, **kwargs)
            if is_main_process():
                replace_into(tmp, path)
        except (OSError, RuntimeError) as err:  # e.g. the disk is full
            raise OSError(
                f'could not write checkpoint {path} ('
                f'{" ".join(str(err).split())[:200]}); the checkpoints '
                'written before are intact and `last_checkpoint` still names '
                'the newest: free space (or fix the folder) and run again '
                'with --resume') from err
        finally:
            if is_main_process() and osp.exists(tmp):
                os.remove(tmp)
        return path

    def _write(self, runner, filename: str, meta: dict, *,
               by_epoch: bool) -> None:
        """Save atomically, point ``last_checkpoint`` at the new file, and
        drop the resume points it replaces."""
        path = self._atomic_save(
            runner, filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta,
            by_epoch=by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        with atomic_path(osp.join(runner.work_dir, 'last_checkpoint')) as p:
            with open(p, 'w') as f:
                f.write(path)
        if self.resume_interval:
            pattern = osp.join(self.out_dir, RESUME_POINT_TMPL.format('*'))
            for old in glob.glob(pattern):
                if osp.abspath(old) != osp.abspath(path):
                    os.remove(old)
