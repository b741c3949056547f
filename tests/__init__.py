"""The library's tests (a package, so that the lab's tests under projects/
import their shared helpers as ``tests.conftest``, not an installed
``tests`` package: model_index ships one into site-packages)."""
