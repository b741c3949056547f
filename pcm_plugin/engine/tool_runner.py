"""mmengine's Runner as the tools start it: the environment and config
dump goes to the log file, not the terminal.

mmengine prints ~200 lines (system environment, the whole config) when a
runner is built; when the run then stops on a bad input, the one line
that matters comes after all of them. The log file keeps everything.
"""
import logging

from mmengine.runner import Runner


class ToolRunner(Runner):
    """``Runner`` whose start-up dump reaches the log file only."""

    def _log_env(self, env_cfg: dict) -> None:
        consoles = [h for h in self.logger.handlers
                    if isinstance(h, logging.StreamHandler)
                    and not isinstance(h, logging.FileHandler)]
        levels = [h.level for h in consoles]
        for handler in consoles:
            handler.setLevel(logging.WARNING)
        try:
            super()._log_env(env_cfg)
        finally:
            for handler, level in zip(consoles, levels):
                handler.setLevel(level)
        self.logger.info(f'Environment and config: {self.log_dir} '
                         '(the log file)')
