"""Constants and functions the tests share (``conftest.py`` keeps the
fixtures).

Tools run two ways here. :func:`call_tool` and :func:`run_tool_main` call a
tool's ``main(argv)`` in this process, as the fast tier does: what a tool
changes in the process (environment, mmengine's global instances, random
state, torch threads) is put back afterwards (:func:`process_state_kept`),
so that no later test sees it. :func:`run_tool` starts a fresh interpreter
(or two under torchrun); only the tests that need one use it, and they are
marked ``slow``.
"""
import functools
import importlib.util
import multiprocessing
import os
import os.path as osp
import random
import re
import socket
import stat
import subprocess
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pytest
import torch
from mmengine.utils import ManagerMixin
from PIL import Image

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO_ROOT), 'shared', 'data')

CAPTIONS = [
    'a red circle above a blue square', 'a small green triangle',
    'two yellow squares on a white background', 'a big blue circle',
    'a red square left of a green circle', 'a purple triangle below a circle',
]

# What marks a process as a torchrun rank: a tool's main ends such a
# process with os._exit (pcm_plugin.cli.launch.end_distributed_run), which
# in-process would end the test session.
TORCHRUN_ENV = ('TORCHELASTIC_RUN_ID', 'RANK', 'LOCAL_RANK', 'WORLD_SIZE',
                'MASTER_ADDR', 'MASTER_PORT')


def random_unit_rows(num: int, dim: int, seed: int = 0) -> np.ndarray:
    """``num`` random rows of unit L2 norm, ``(num, dim)`` float32."""
    rows = np.random.default_rng(seed).standard_normal((num, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(
        np.float32)


def dump_captioning_config(toy_world, root) -> str:
    """A toy PCM-Net config that also names its (tiny) CLIP, so that raw
    images can be captioned with it.

    Args:
        toy_world (dict): The ``toy_world`` fixture.
        root: Folder for the config and its work dir.

    Returns:
        str: The dumped config's path.
    """
    from pcm_plugin.testing.toy_features import toy_config
    cfg = toy_config(toy_world, osp.join(str(root), 'work'))
    clip_dir = osp.dirname(toy_world['clip_head'])
    cfg.clip_model = dict(
        name='pcm-tiny-vit-b32', checkpoint=toy_world['clip_head'],
        model_config=osp.join(clip_dir, 'pcm-tiny-vit-b32.json'))
    config = osp.join(str(root), 'toy_pcm.py')
    cfg.dump(config)
    return config


def free_port() -> int:
    """A TCP port nobody listens on now, for a torchrun rendezvous.

    Fixed ports collide when two test sessions (or a lingering socket)
    hold them: torchrun then fails with EADDRINUSE.
    """
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def failed_run(proc, cmd) -> str:
    """The whole story of a failed tool run, for the assertion message.

    Nothing is cut: a torchrun rank's error sits anywhere in its output
    (a SIGABRT once lost its cause to a 4,000-character tail). The text is
    also kept in ``work_dirs/test_failures/`` for CI logs that truncate.

    Args:
        proc: A finished run with ``returncode``, ``stdout`` and
            ``stderr`` (a subprocess's or :func:`call_tool`'s).
        cmd (Sequence): The command (or tool and arguments) it ran.

    Returns:
        str: The message, ending with where the text was kept.
    """
    text = (f'command: {" ".join(map(str, cmd))}\nexit {proc.returncode}\n'
            f'--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}')
    folder = osp.join(REPO_ROOT, 'work_dirs', 'test_failures')
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{time.strftime("%Y%m%d-%H%M%S")}-'
                    f'{os.getpid()}.log')
    with open(path, 'w') as f:
        f.write(text)
    return f'{text}\n(kept in {path})'


def run_tool(tool: str, args, *, torchrun=False, check=True):
    """Run ``tools/<tool>`` in a fresh process like a user: one process, or
    2 under torchrun (on a free port).

    ``OMP_NUM_THREADS=1`` as torchrun sets it, so single- and multi-process
    runs use the same kernels and produce the same bytes.

    Args:
        tool (str): Path under ``tools/``, e.g. ``'train.py'``.
        args (Sequence): Its arguments (made strings).
        torchrun (bool): Two processes under ``torch.distributed.run``.
        check (bool): Raise with :func:`failed_run` on a non-zero exit.

    Returns:
        subprocess.CompletedProcess: With text ``stdout`` and ``stderr``.
    """
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1',
               TOKENIZERS_PARALLELISM='false')
    launcher = [sys.executable]
    if torchrun:
        launcher += ['-m', 'torch.distributed.run', '--nproc_per_node', '2',
                     '--master_port', str(free_port())]
    cmd = launcher + [osp.join(REPO_ROOT, 'tools', tool)] + [
        str(a) for a in args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(failed_run(proc, cmd))
    return proc


def _manager_classes() -> list:
    """Every class with mmengine's global instances (DefaultScope,
    MessageHub, MMLogger, Visualizer, ...), subclasses included."""
    found, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@contextmanager
def process_state_kept(*, threads: Optional[int] = None) -> Iterator[None]:
    """Undo, on exit, what a tool's ``main`` changes in this process.

    A tool run as a user runs it owns its process; called in-process it
    must leave none of this to the tests after it: ``os.environ`` (the
    tools set ``LOCAL_RANK``, ``PCM_TRUST_CHECKPOINT``,
    ``PYTHONWARNINGS``), ``sys.path`` (each tool puts the clone first),
    the working directory, mmengine's global instances (the Runner makes
    a ``DefaultScope`` that changes registry look-ups, a ``MessageHub`` and
    an ``MMLogger`` with a file handler, which is closed), the random
    state of ``random``, numpy and torch (the Runner seeds them), torch's
    thread count and deterministic switches, and the multiprocessing start
    method (mmengine forces one); the warning filters too (the tools'
    start-up hides the stack's known warnings).

    The torchrun variables are removed for the call: with them a tool
    would end the test process with ``os._exit``.

    Args:
        threads (int, optional): torch threads during the call; None
            keeps the current count.
    """
    env = dict(os.environ)
    path = list(sys.path)
    cwd = os.getcwd()
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    num_threads = torch.get_num_threads()
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)
    start_method = multiprocessing.get_start_method(allow_none=True)
    instances = {cls: dict(cls._instance_dict) for cls in _manager_classes()}
    for name in TORCHRUN_ENV:
        os.environ.pop(name, None)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        os.environ.clear()
        os.environ.update(env)
        sys.path[:] = path
        os.chdir(cwd)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        torch.set_num_threads(num_threads)
        torch.use_deterministic_algorithms(deterministic[0],
                                           warn_only=deterministic[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic \
            = cudnn
        multiprocessing.set_start_method(start_method, force=True)
        for cls in _manager_classes():
            kept = instances.get(cls, {})
            for name in [n for n in cls._instance_dict if n not in kept]:
                made = cls._instance_dict.pop(name)
                for handler in getattr(made, 'handlers', [])[:]:
                    handler.close()
                    made.removeHandler(handler)


def tool_main(relpath: str) -> Callable:
    """A tool's ``main``, imported in-process (importing it is the cost),
    wrapped so that each call leaves the process as it found it
    (:func:`process_state_kept`).

    Args:
        relpath (str): e.g. ``'tools/build_vocab.py'``.

    Returns:
        Callable: ``main(argv)``, with the tool's ``__module__``.
    """
    name = 'tool_' + re.sub(r'\W', '_', relpath)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO_ROOT, relpath))
        module = importlib.util.module_from_spec(spec)
        with process_state_kept():  # the tool's start-up runs on import
            spec.loader.exec_module(module)
        sys.modules[name] = module
    main = sys.modules[name].main

    @functools.wraps(main)
    def kept(*args, **kwargs):
        with process_state_kept():
            return main(*args, **kwargs)
    return kept


def run_tool_main(relpath: str, argv) -> int:
    """Call a tool's ``main`` in-process; returns what it returns (an exit
    code, or None), and raises what it raises (``SystemExit`` included).

    Args:
        relpath (str): e.g. ``'tools/build_vocab.py'``.
        argv (Sequence): Its arguments (made strings).
    """
    return tool_main(relpath)([str(a) for a in argv])


def call_tool(relpath: str, args: Sequence, capture=None, *,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run a tool's ``main(argv)`` in-process as ``python TOOL ARGS`` would
    run it, and give back what a subprocess would.

    As in :func:`run_tool`'s subprocess: the working directory is the
    clone and torch uses one thread (``OMP_NUM_THREADS=1``), so the results
    equal a subprocess's, and a torchrun's, byte for byte. The exit status
    follows the interpreter's rules: ``sys.exit('message')`` prints the
    message to stderr and exits 1, an uncaught exception prints its
    traceback and exits 1.

    Args:
        relpath (str): e.g. ``'tools/test.py'``.
        args (Sequence): Its arguments (made strings).
        capture: pytest's ``capfd`` (file-descriptor capture, which also
            takes what a logger created during the call writes), or None
            to leave the output to pytest (stdout and stderr are then
            empty).
        check (bool): Raise with :func:`failed_run` on a non-zero exit.

    Returns:
        subprocess.CompletedProcess: ``returncode``, ``stdout``,
        ``stderr``.
    """
    argv = [str(a) for a in args]
    main = tool_main(relpath)
    if capture is not None:
        capture.readouterr()  # earlier output is not this run's
    with process_state_kept(threads=1):
        os.chdir(REPO_ROOT)
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        except Exception:  # the interpreter prints it and exits 1
            traceback.print_exc()
            code = 1
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    out, err = capture.readouterr() if capture is not None else ('', '')
    proc = subprocess.CompletedProcess([relpath, *argv], code or 0, out,
                                       err)
    if check and proc.returncode != 0:
        raise AssertionError(failed_run(proc, proc.args))
    return proc


def write_images(root, n=3) -> list:
    """``n`` random RGB JPEGs ``1.jpg``, ``2.jpg``, ... of growing heights.

    Args:
        root: The folder.
        n (int): How many. Defaults to 3.

    Returns:
        list[str]: Their paths, in order.
    """
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = osp.join(root, f'{i + 1}.jpg')
        Image.fromarray(rng.integers(0, 255, (90 + 10 * i, 120, 3),
                                     dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def make_char_device(path) -> None:
    """Create a character device with /dev/null's numbers at ``path``
    (skip the test where mknod is not allowed: it needs root)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip('mknod needs root')


def tiny_captioner_cfg(tiny_clip, tiny_bank, tiny_tokenizer, *,
                       beam_size: int) -> dict:
    """A PCMCaptioner config of width 32 over the conftest's tiny CLIP,
    concept bank and tokenizer (the fixtures' values)."""
    small = dict(embed_dim=32, num_layers=1, num_heads=2, ffn_dim=64)
    return dict(
        type='PCMCaptioner', tokenizer=tiny_tokenizer, max_len=8,
        mixup=dict(type='PCMMixup', patch_dim=48, global_dim=32,
                   num_patches=49, embed_dim=32, concept_bank=tiny_bank,
                   clip_head=tiny_clip[1], top_k=3),
        encoder=dict(type='VisualSemanticEncoder', **small),
        decoder=dict(type='CaptionTransformerDecoder', max_len=8,
                     beam_size=beam_size, **small),
        loss=dict(type='CLIPWeightedCELoss', alpha=2.5))


def save_tiny_gpt2_folder(folder: str, *, lm: dict, seed: int = 5) -> str:
    """A tiny random GPT-2 saved as a user's local download would be: its
    weights and ``config.json``, and a byte-level BPE tokenizer trained on
    :data:`CAPTIONS` (300 entries) with ``<|endoftext|>`` after them
    (id 300), last as in GPT-2.

    Args:
        folder (str): Where to save it (created).
        lm (dict): ``GPT2Config`` keywords of the architecture, e.g.
            ``dict(n_embd=24, n_layer=2, n_head=2, n_positions=48)``.
        seed (int): Seed of the random weights. Defaults to 5.

    Returns:
        str: ``folder``.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CAPTIONS, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.add_special_tokens(['<|endoftext|>'])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe,
                                  eos_token='<|endoftext|>',
                                  bos_token='<|endoftext|>')
    tokenizer.save_pretrained(folder)
    eos = tokenizer.eos_token_id
    torch.manual_seed(seed)
    GPT2LMHeadModel(GPT2Config(**lm, vocab_size=len(tokenizer),
                               bos_token_id=eos, eos_token_id=eos)
                    ).save_pretrained(folder)
    return folder
