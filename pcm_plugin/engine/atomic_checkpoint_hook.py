"""Checkpoint rotation that a kill can never leave without a checkpoint.

mmengine's ``CheckpointHook`` deletes the oldest kept checkpoint *before*
writing the new one, writes the new one in place and then points
``last_checkpoint`` at it: with ``max_keep_ckpts=1``, a kill during the
save leaves a cut-short file, no older one, and ``last_checkpoint`` naming
the broken file — the whole run is lost. This hook writes the new
checkpoint under a temporary name, renames it into place, rewrites
``last_checkpoint`` atomically, and only then deletes what the rotation
drops.
"""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from pcm_plugin.registry import HOOKS
from pcm_plugin.utils.fileio import atomic_path


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with write-then-rename and delete-after-save.

    Takes every argument of mmengine's ``CheckpointHook`` (local files).
    """

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
        tmp_name = f'{filename}.tmp{os.getpid()}'
        try:
            runner.save_checkpoint(
                self.out_dir, tmp_name, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args,
                **self.args)
            if is_main_process():
                os.replace(osp.join(self.out_dir, tmp_name), self.last_ckpt)
        finally:
            tmp = osp.join(self.out_dir, tmp_name)
            if is_main_process() and osp.exists(tmp):
                os.remove(tmp)
        if not is_main_process():
            return
        with atomic_path(osp.join(runner.work_dir, 'last_checkpoint')) as p:
            with open(p, 'w') as f:
                f.write(self.last_ckpt)
        for old in drop:  # only now that the new one is complete
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)
