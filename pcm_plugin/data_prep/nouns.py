# Copyright (c) pcm_plugin authors. MIT licence.
"""Frequent nouns of a caption corpus, by a documented heuristic.

The official 446 concept words are "high-frequency nouns in the MSCOCO
training corpus", most likely from NLTK POS tags and WordNet lemmas
(docs/method.md §2.5). Neither NLTK's tagger nor WordNet data can be downloaded
here, so this is a HEURISTIC, not a tagger. It exploits how captions are
written: a noun phrase opens with a determiner, number or preposition
(``a``, ``two``, ``on``...), and its head noun is the last word before the
phrase ends at a function word, a verb-like word followed by another phrase
(``riding a``, ``sitting on``), or the end of the caption::

    a man riding a horse on the beach  ->  man, horse, beach
    a red double decker bus driving down the street  ->  bus, street

Heads are lemmatised by simple plural folding (see :func:`singular`), so
"veggies" becomes "veggy" and "sunglasses" "sunglass" as in the official
list. Words are then ranked by
how often they head a phrase.
"""
import re
from collections import Counter
from typing import Iterable, List, Sequence, Tuple

from pcm_plugin.utils.progress import progress_bar

DETERMINERS = frozenset('''
a an the this that these those some several many few each every another
any both either neither no my your his her its our their one two three four
five six seven eight nine ten eleven twelve dozen dozens couple lots
'''.split())
PREPOSITIONS = frozenset('''
about above across after against along alongside amid amidst among around
at atop before behind below beneath beside besides between beyond by down
during except for from in inside into near next of off on onto opposite out
outside over past per through throughout toward towards under underneath
until up upon via with within without
'''.split())
# Closed-class words that end a noun phrase but open none.
FUNCTION_WORDS = frozenset('''
and or but nor so yet while as than because if though although whether
is are was were be been being am has have had having do does did will would
can could should may might must shall it they them he she him we us you i
me who whom whose which what where when why how there here then also very
not just only too all its itself themselves to next someone something
somebody anyone anything everyone everything nothing himself herself
yourself like alone nearby
'''.split()) | DETERMINERS | PREPOSITIONS
SINGULAR_DETERMINERS = frozenset(
    'a an one this that another each every either neither'.split())
# Frequent caption adjectives and adverbs that are never concept heads.
NON_NOUNS = frozenset('''
other large small big little white black red blue green yellow brown gray
grey pink purple old young tall long short different empty open full wooden
various front top side back close together away around inside outside
up down out very well several many lot high wild ready made taken own
'''.split())
IRREGULAR_PLURALS = {
    'men': 'man', 'women': 'woman', 'children': 'child', 'feet': 'foot',
    'teeth': 'tooth', 'mice': 'mouse', 'geese': 'goose', 'oxen': 'ox',
    'knives': 'knife', 'wives': 'wife', 'leaves': 'leaf', 'loaves': 'loaf',
    'shelves': 'shelf', 'calves': 'calf', 'halves': 'half',
    'wolves': 'wolf', 'scarves': 'scarf', 'lives': 'life',
}
PLURALIA_TANTUM = frozenset(
    'clothes pants shorts scissors jeans trousers fries news'.split())
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def caption_words(caption: str) -> List[str]:
    """Lower-cased alphabetic words (punctuation and digits dropped)."""
    return _WORD.findall(caption.lower())


def _ends_phrase(words: Sequence[str], i: int, start: int) -> bool:
    """True if ``words[i]`` cannot continue the phrase opened at start."""
    word = words[i]
    if word in FUNCTION_WORDS:
        return True
    following = words[i + 1] if i + 1 < len(words) else ''
    # A verb form followed by a new phrase ("riding a", "sitting on"), or
    # an -ing word after the noun ("a woman wearing sunglasses"); first in
    # the phrase it is a modifier or the noun: "a parking lot", "a building".
    return word.endswith(('ing', 'ed')) and following in (
        DETERMINERS | PREPOSITIONS) or (word.endswith('ing') and i > start + 1)


def _opens_phrase(word: str) -> bool:
    # A determiner or preposition, or a verb form taking a bare object
    # ("playing tennis", "eating pizza"). "to" opens none: "to sit".
    return word in DETERMINERS or word in PREPOSITIONS or (
        word.endswith('ing') and len(word) > 5)


def _head(opener: str, content: List[str]) -> str:
    # A participle after the noun describes it: "a man sitting" -> man;
    # after a singular determiner a final -s word is a verb: "a cat sits".
    while len(content) > 1 and (
            content[-1].endswith(('ing', 'ed')) or
            (opener in SINGULAR_DETERMINERS and content[-1].endswith('s')
             and not content[-1].endswith(('ss', 'us', 'is', 'as')))):
        content = content[:-1]
    return content[-1] if content else ''


def phrase_heads(words: Sequence[str]) -> List[str]:
    """Head words of the noun phrases opened by determiners/prepositions.

    Args:
        words (Sequence[str]): One caption's words from
            :func:`caption_words`.

    Returns:
        list[str]: One head per phrase, in order.
    """
    heads = []
    i = 0
    while i < len(words):
        if not _opens_phrase(words[i]):
            i += 1
            continue
        j = i + 1
        while j < len(words) and not _ends_phrase(words, j, i):
            j += 1
        head = _head(words[i], [w for w in words[i + 1:j] if len(w) > 1])
        if head and head not in NON_NOUNS:
            heads.append(head)
        i = max(j, i + 1)
    return heads


def singular(word: str, known) -> str:
    """Fold a plural noun to its singular.

    Args:
        word (str): A phrase head.
        known (Container[str]): Words seen anywhere in the corpus; a
            regular ``-s``/``-es`` plural folds only to a seen singular
            (so "glass" or "series" stay), while ``-ies``, ``-sses``,
            ``-ches``, ``-shes``, ``-xes`` always fold and a few pluralia
            tantum never do.

    Returns:
        str: The singular (or the word itself).
    """
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if word in PLURALIA_TANTUM or len(word) < 4:
        return word
    if word.endswith('ies'):
        return word[:-3] + 'y'  # "veggies" -> "veggy", as WordNet does
    if word.endswith(('sses', 'ches', 'shes', 'xes', 'zzes')):
        return word[:-2]
    if word.endswith('s') and not word.endswith('ss'):
        for candidate in (word[:-1], word[:-2]):  # horses, buses
            if candidate in known:
                return candidate
    return word


def count_nouns(captions: Iterable[str], progress: bool = False) -> Counter:
    """Count lemmatised phrase heads over a corpus.

    Args:
        captions (Iterable[str]): The corpus.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        Counter: noun -> number of phrases it heads.
    """
    raw: Counter = Counter()
    vocabulary = set()
    for caption in progress_bar(captions, desc='captions',
                                disable=not progress):
        words = caption_words(caption)
        vocabulary.update(words)
        raw.update(phrase_heads(words))
    nouns: Counter = Counter()
    for word, count in raw.items():
        if word.endswith('ly') and word[:-2] in vocabulary:
            continue  # an adverb of a seen word: "intently", "slowly"
        nouns[singular(word, vocabulary)] += count
    return nouns


def frequent_nouns(captions: Iterable[str], *, top_k: int = 446,
                   min_count: int = 1,
                   progress: bool = False) -> List[Tuple[str, int]]:
    """The ``top_k`` most frequent nouns seen at least ``min_count`` times.

    Args:
        captions (Iterable[str]): The corpus.
        top_k (int): Number of nouns to return (0 = all). Defaults to 446.
        min_count (int): Minimum count. Defaults to 1.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        list[tuple[str, int]]: ``(noun, count)`` by decreasing count, ties
        alphabetically.
    """
    nouns = count_nouns(captions, progress)
    ranked = sorted(((w, c) for w, c in nouns.items() if c >= min_count),
                    key=lambda wc: (-wc[1], wc[0]))
    return ranked[:top_k] if top_k else ranked
