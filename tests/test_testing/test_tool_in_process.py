"""Tools called in-process (tests/helpers.py): the exit status and output a
subprocess would give, and nothing of the call left in the process."""
import os
import random
import sys

import numpy as np
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import DefaultScope

from tests.helpers import call_tool, process_state_kept

# A stand-in tool: what it does is chosen by its first argument.
TOOL = '''
import sys


def main(argv=None):
    what = argv[0]
    if what == 'print':
        print('to stdout')
        print('to stderr', file=sys.stderr)
    elif what == 'message':
        sys.exit('error: one clear line')
    elif what == 'raise':
        raise ValueError('not caught')
    elif what == 'code':
        return 3
'''


def test_exit_status_and_output_are_a_subprocess_s(tmp_path, capfd):
    tool = tmp_path / 'stand_in.py'
    tool.write_text(TOOL)
    ran = call_tool(str(tool), ['print'], capfd)
    assert (ran.returncode, ran.stdout, ran.stderr) == (
        0, 'to stdout\n', 'to stderr\n')
    ran = call_tool(str(tool), ['message'], capfd, check=False)
    assert (ran.returncode, ran.stdout, ran.stderr) == (
        1, '', 'error: one clear line\n')
    ran = call_tool(str(tool), ['raise'], capfd, check=False)
    assert ran.returncode == 1
    assert ran.stderr.startswith('Traceback (most recent call last):')
    assert ran.stderr.endswith('ValueError: not caught\n')
    assert call_tool(str(tool), ['code'], capfd, check=False).returncode == 3


def test_what_a_tool_changes_in_the_process_is_put_back(tmp_path):
    """Environment, sys.path, working directory, mmengine's instances (the
    logger's file closed), random states, torch's threads and switches."""
    env, path, cwd = dict(os.environ), list(sys.path), os.getcwd()
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    scopes = dict(DefaultScope._instance_dict)
    hubs = dict(MessageHub._instance_dict)
    loggers = dict(MMLogger._instance_dict)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), float(torch.rand(())))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with process_state_kept(threads=1):
        assert torch.get_num_threads() == 1
        os.environ['PCM_TRUST_CHECKPOINT'] = '1'
        os.environ.pop('PATH')
        sys.path.insert(0, str(tmp_path))
        os.chdir(tmp_path)
        DefaultScope.get_instance('tool-run', scope_name='mmpretrain')
        MessageHub.get_instance('tool-run')
        logger = MMLogger.get_instance(
            'tool-run', log_file=str(tmp_path / 'run.log'))
        handler = logger.handlers[-1]
        random.seed(7), np.random.seed(7), torch.manual_seed(7)
        random.random(), np.random.rand(), torch.rand(())
        torch.set_num_threads(2)
        torch.use_deterministic_algorithms(not deterministic)
    assert dict(os.environ) == env and sys.path == path
    assert os.getcwd() == cwd
    assert dict(DefaultScope._instance_dict) == scopes
    assert dict(MessageHub._instance_dict) == hubs
    assert dict(MMLogger._instance_dict) == loggers
    assert handler.stream is None  # the log file was closed
    assert (random.random(), np.random.rand(),
            float(torch.rand(()))) == expected
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
