"""What a decoder's search did, counted from outside: for tests that check
the search stops early, and for the lab's decoding benchmark."""
import torch


def search_steps(decoder, memory: torch.Tensor, mask: torch.Tensor, *,
                 beam_size: int, max_len: int) -> int:
    """Decoding steps one search runs: it stops once every sample's beams
    have finished, so a trained decoder runs fewer than ``max_len``.

    Args:
        decoder: A decoder with ``step`` and ``generate`` (e.g.
            :class:`~pcm_plugin.models.CaptionTransformerDecoder`); its
            ``step`` is wrapped on the instance for the call only.
        memory (torch.Tensor): ``(B, L, d)`` encoder output.
        mask (torch.Tensor): ``(B, L)`` bool, True = visible.
        beam_size (int): Beams per sample.
        max_len (int): Most decoding steps.

    Returns:
        int: The number of ``step`` calls.
    """
    calls = []
    step = decoder.step

    def counted(*args):
        calls.append(1)
        return step(*args)

    decoder.step = counted  # on the instance, removed below
    try:
        with torch.no_grad():
            decoder.generate(memory, mask, beam_size=beam_size,
                             max_len=max_len)
    finally:
        del decoder.step
    return len(calls)
