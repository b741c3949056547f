"""mmengine's Runner as the tools start it: the environment and config
dump goes to the log file, not the terminal.

mmengine prints ~200 lines (system environment, the whole config) when a
runner is built; when the run then stops on a bad input, the one line
that matters comes after all of them. The log file keeps everything.
"""
import logging

from mmengine.runner import Runner

# mmengine's notices that say nothing about the user's run (our metrics
# name their keys without a prefix on purpose: configs select 'CIDEr').
KNOWN_HARMLESS_LOG_LINES = ('The prefix is not set in metric class',)


class _DropKnownHarmless(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(KNOWN_HARMLESS_LOG_LINES)


class ToolRunner(Runner):
    """``Runner`` whose start-up dump reaches the log file only, and whose
    logger drops :data:`KNOWN_HARMLESS_LOG_LINES`."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        if not any(isinstance(f, _DropKnownHarmless) for f in logger.filters):
            logger.addFilter(_DropKnownHarmless())
        return logger

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
