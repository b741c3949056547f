# Copyright (c) pcm_plugin authors. MIT licence.
"""Read pickles someone else made without running code from them.

A plain ``pickle.load`` calls whatever callable the file names. The
official PCM-Net release ships its concept banks and its annotation lists
as pickles; :class:`AdmittedGlobalsUnpickler` resolves only an explicit
table of globals (found with ``pickletools.dis`` on the real files) and
refuses any other one with an error naming it, before it is called.
"""
import pickle
from typing import Dict, Tuple


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the admitted set."""


class AdmittedGlobalsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the admitted globals.

    Args:
        file: A binary file object.
        admitted (dict): ``(module, name) -> object`` the file may name.
        source (str): File name for error messages.
        what (str): What the file should be (``'a concept-bank pickle'``).
        **kwargs: ``encoding`` and the other ``pickle.Unpickler`` options.
    """

    def __init__(self, file, *, admitted: Dict[Tuple[str, str], object],
                 source: str, what: str, **kwargs):
        super().__init__(file, **kwargs)
        self.admitted, self.source, self.what = admitted, source, what

    def find_class(self, module: str, name: str):
        try:
            return self.admitted[module, name]
        except KeyError:
            allowed = ', '.join(sorted(f'{m}.{n}' for m, n in self.admitted))
            raise UnsafePickleError(
                f'{self.source}: refusing to load global {module}.{name}; '
                f'{self.what} may only reference {allowed}. Nothing from '
                'the file was executed.') from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f'{self.source}: unexpected persistent id '
                                f'{pid!r}; not {self.what}')
