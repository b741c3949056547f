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
from pcm_plugin.utils.fileio import atomic_path

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
        **kwargs: Every argument of mmengine's ``CheckpointHook`` (local
            files).
    """

    def __init__(self, *, resume_interval: Optional[int] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if resume_interval is not None and (
                not self.by_epoch or resume_interval < 1):
            raise ValueError(
                'AtomicCheckpointHook: resume_interval needs by_epoch=True '
                'and a positive number of iterations (with by_epoch=False '
                'the checkpoints are iteration-based already: use interval)')
        self.resume_interval = resume_interval

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

    def _write(self, runner, filename: str, meta: dict, *,
               by_epoch: bool) -> None:
        """Save under a temporary name, rename into place, point
        ``last_checkpoint`` at it, and drop the resume points it replaces.
        """
        tmp_name = f'{filename}.tmp{os.getpid()}'
        path = osp.join(self.out_dir, filename)
        try:
            runner.save_checkpoint(
                self.out_dir, tmp_name, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=by_epoch, backend_args=self.backend_args,
                **self.args)
            if is_main_process():
                os.replace(osp.join(self.out_dir, tmp_name), path)
        except (OSError, RuntimeError) as err:  # e.g. the disk is full
            raise OSError(
                f'could not write checkpoint {path} ('
                f'{" ".join(str(err).split())[:200]}); the checkpoints '
                'written before are intact and `last_checkpoint` still names '
                'the newest: free space (or fix the folder) and run again '
                'with --resume') from err
        finally:
            tmp = osp.join(self.out_dir, tmp_name)
            if is_main_process() and osp.exists(tmp):
                os.remove(tmp)
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
