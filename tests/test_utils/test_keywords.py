"""Unknown keywords: one line, the closest known names."""
import pytest

from pcm_plugin.utils.keywords import (
    check_keywords,
    named_keywords,
    takes_any_keyword,
)


def _f(a, b=1, *, max_keep_ckpts=2):
    return a, b, max_keep_ckpts


def test_named_keywords_of_a_plain_and_a_kwargs_function():
    assert named_keywords(_f) == {'a', 'b', 'max_keep_ckpts'}
    assert not takes_any_keyword(_f)
    assert named_keywords(lambda x, **kw: kw) == {'x'}
    assert takes_any_keyword(lambda x, **kw: kw)


def test_bad_input_unknown_keyword_names_the_closest():
    with pytest.raises(ValueError, match=(
            r"^hook: unknown argument 'max_keep_ckpt' \(did you mean "
            r"'max_keep_ckpts'\?\), 'zzz'; it takes a, b, max_keep_ckpts$")):
        check_keywords('hook', ['a', 'max_keep_ckpt', 'zzz'],
                       named_keywords(_f))
    check_keywords('hook', ['a', 'b'], named_keywords(_f))


def test_bad_input_checkpoint_hook_typo_fails_at_build():
    """Before: passed to every save, failing after a whole epoch."""
    from pcm_plugin.registry import HOOKS
    with pytest.raises(ValueError, match=(
            r"default_hooks.checkpoint\): unknown argument 'max_keep_ckpt' "
            r"\(did you mean 'max_keep_ckpts'\?\)")):
        HOOKS.build(dict(type='AtomicCheckpointHook', interval=1,
                         max_keep_ckpt=1))
    hook = HOOKS.build(dict(type='AtomicCheckpointHook', interval=1,
                            max_keep_ckpts=1, resume_interval=5))
    assert hook.max_keep_ckpts == 1 and hook.resume_interval == 5
