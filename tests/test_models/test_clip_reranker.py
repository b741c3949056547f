"""CLIPReranker and the beam search's ``all_beams``: the fused score on
hand-built numbers, plain beam search where it must be, and an end-to-end
decode with the tiny random CLIP."""
import math

import pytest
import torch
import torch.nn.functional as F

from pcm_plugin.models.clip_reranker import (
    CLIPReranker,
    fused_scores,
    scored_lengths,
)
from pcm_plugin.models.tokenizer import decode_ids
from pcm_plugin.registry import MODELS
from tests.helpers import tiny_captioner_cfg
from tests.test_models.decoder_checks import (
    all_sequences,
    make_decoder,
    make_memory,
    pad_eos,
    sequence_log_probs,
)

# Two candidates: A (beam 0) sums -2 over 4 tokens (mean -0.5), cosine 0;
# B sums -3 over 3 tokens (mean -1), cosine 0.5. All values are dyadic, so
# the fused scores below are exact. Per token (a = 1) the fused scores are
# A = -0.5 (1 - w) and B = -(1 - w) + 0.5 w: equal at w = 0.5. Summed
# (a = 0): A = -2 (1 - w), B = -3 (1 - w) + 0.5 w: equal at w = 2/3.
LOG_PROBS = torch.tensor([[-2.0, -3.0]])
LENGTHS = torch.tensor([[4, 3]])
COSINES = torch.tensor([[0.0, 0.5]])


@pytest.fixture
def cfg(tiny_clip, tiny_bank, tiny_tokenizer):
    return tiny_captioner_cfg(tiny_clip, tiny_bank, tiny_tokenizer,
                              beam_size=3)


def reranker_cfg(tiny_clip, **settings):
    return dict(dict(type='CLIPReranker', clip_model=tiny_clip[0],
                     clip_checkpoint=tiny_clip[1], weight=0.5,
                     num_candidates=3), **settings)


def features(seed, n=4):
    gen = torch.Generator().manual_seed(seed)
    return dict(patch_feats=torch.randn(n, 49, 48, generator=gen),
                global_feat=torch.randn(n, 32, generator=gen))


def plain_and_reranked(cfg, tiny_clip, **settings):
    """The same trained-by-nobody weights without and with a re-ranker."""
    torch.manual_seed(0)
    plain = MODELS.build(cfg).eval()
    reranked = MODELS.build(dict(cfg, reranker=reranker_cfg(
        tiny_clip, **settings))).eval()
    reranked.load_state_dict(plain.state_dict())  # strict: same keys
    return plain, reranked


class TestFusedScore:

    def test_scored_lengths_count_words_and_the_first_eos(self):
        ids = torch.tensor([[[5, 6, 0, 0], [5, 0, 0, 0]],
                            [[0, 0, 0, 0], [5, 6, 7, 8]]])  # (2, 2, 4)
        assert scored_lengths(ids, 0).tolist() == [[3, 2], [1, 4]]

    @pytest.mark.parametrize('weight, expected, pick', [
        (0.0, [-0.5, -1.0], 0), (0.25, [-0.375, -0.625], 0),
        (0.5, [-0.25, -0.25], 0),  # a tie: the earlier beam
        (0.75, [-0.125, 0.125], 1), (1.0, [0.0, 0.5], 1)])
    def test_per_token_flips_at_one_half(self, weight, expected, pick):
        scores = fused_scores(LOG_PROBS, LENGTHS, COSINES, weight=weight,
                              length_penalty=1.0)
        assert scores.tolist() == [expected]
        assert scores.argmax(-1).item() == pick

    @pytest.mark.parametrize('weight, pick', [
        (0.0, 0), (0.625, 0), (0.6875, 1), (1.0, 1)])
    def test_summed_flips_at_two_thirds(self, weight, pick):
        scores = fused_scores(LOG_PROBS, LENGTHS, COSINES, weight=weight,
                              length_penalty=0.0)
        assert scores[0, 0].item() == -2.0 * (1 - weight)
        assert scores[0, 1].item() == -3.0 * (1 - weight) + 0.5 * weight
        assert scores.argmax(-1).item() == pick

    def test_weight_zero_without_length_penalty_is_the_summed_score(self):
        log_probs = torch.tensor([[-1.3, -1.7, -2.9]])
        scores = fused_scores(log_probs, torch.tensor([[2, 9, 3]]),
                              torch.tensor([[-0.4, 0.9, 0.3]]), weight=0.0,
                              length_penalty=0.0)
        assert torch.equal(scores, log_probs)

    def test_missing_candidates_never_win(self):
        """A beam the search could not fill (-inf) loses even when CLIP
        alone decides."""
        scores = fused_scores(torch.tensor([[-5.0, -math.inf]]),
                              torch.tensor([[2, 8]]),
                              torch.tensor([[0.125, 0.9]]), weight=1.0,
                              length_penalty=1.0)
        assert scores.tolist() == [[0.125, -math.inf]]

    @pytest.mark.parametrize('settings, match', [
        (dict(weight=1.5), 'weight=1.5'),
        (dict(weight=0.3, length_penalty=-1.0), 'length_penalty'),
        (dict(weight=0.3, num_candidates=0), 'num_candidates')])
    def test_bad_settings(self, settings, match):
        with pytest.raises(ValueError, match=match):
            CLIPReranker(clip_model='unused', **settings)


class TestAllBeams:

    @pytest.mark.parametrize('beam_size', [1, 3, 5])
    @pytest.mark.parametrize('eos_bias', [0.0, 2.0, -1e4])
    def test_first_beam_is_the_plain_search_result(self, beam_size,
                                                   eos_bias):
        """Same search: the first of the W beams is what the plain search
        returns (ids and score to the bit); the W scores are sorted, and
        each is the full forward's log-probability of its ids."""
        decoder = make_decoder(seed=1, vocab_size=11, sharpen=4.0)
        with torch.no_grad():
            decoder.predictor[1].bias[decoder.eos_id] += eos_bias
        memory, mask = make_memory(seed=31, batch=6, length=7)
        ids, scores = decoder.generate(memory, mask, beam_size=beam_size,
                                       max_len=6)
        beams, beam_scores = decoder.generate(
            memory, mask, beam_size=beam_size, max_len=6, all_beams=True)
        assert beams.shape == (6, beam_size, 6)
        assert torch.equal(beams[:, 0], ids)
        assert torch.equal(beam_scores[:, 0], scores)
        assert (beam_scores[:, :-1] >= beam_scores[:, 1:]).all()
        for b in range(6):
            seqs = [row[:row.index(0) + 1] if 0 in row else row
                    for row in beams[b].tolist()]
            assert len({tuple(s) for s in seqs}) == beam_size
            expected = sequence_log_probs(decoder, seqs, memory[b:b + 1],
                                          mask[b:b + 1])
            torch.testing.assert_close(beam_scores[b],
                                       torch.tensor(expected), atol=1e-5,
                                       rtol=0)

    def test_wide_beams_are_the_best_sequences(self):
        """A beam wider than the hypotheses keeps the W best sequences of
        all, in order (full forwards score every sequence)."""
        decoder = make_decoder(seed=2, vocab_size=4)
        memory, mask = make_memory(seed=12, batch=2)
        sequences = list(all_sequences(4, 3, decoder.eos_id))
        beams, scores = decoder.generate(memory, mask, beam_size=64,
                                         max_len=3, all_beams=True)
        for b in range(2):
            ranked = sorted(zip(sequence_log_probs(
                decoder, sequences, memory[b:b + 1], mask[b:b + 1]),
                sequences), key=lambda pair: -pair[0])
            assert len(ranked) < 64  # the rest of the beams are -inf
            assert beams[b, :len(ranked)].tolist() == [
                pad_eos(seq, 3, decoder.eos_id) for _, seq in ranked]
            assert torch.isinf(scores[b, len(ranked):]).all()


class TestCaptioner:

    def test_off_by_default_predicts_as_before(self, cfg):
        """No ``reranker``: the captioner's captions are the plain beam
        search's best beam, decoded (what ``generate`` did before)."""
        torch.manual_seed(0)
        model = MODELS.build(cfg).eval()
        assert model.reranker is None
        inputs = features(seed=3)
        memory, mask = model.encode(inputs, drop_masked=True)
        ids, _ = model.decoder.generate(memory, mask, max_len=8)
        assert model.generate(inputs) == decode_ids(model.tokenizer, ids)
        with pytest.raises(RuntimeError, match='needs model.reranker'):
            model.caption_candidates(inputs)

    def test_weight_zero_summed_is_plain_beam_search(self, cfg, tiny_clip):
        """w = 0, a = 0: the plain search's captions. The beams end at
        different lengths (EOS made likelier), so a = 1 (per token)
        picks others: the control that the comparison can fail."""
        plain, reranked = plain_and_reranked(
            cfg, tiny_clip, weight=0.0, length_penalty=0.0)
        with torch.no_grad():
            for model in (plain, reranked):
                model.decoder.predictor[1].bias[model.decoder.eos_id] += 1.0
        batches = [features(seed=seed, n=6) for seed in range(4)]
        for inputs in batches:
            assert reranked.generate(inputs) == plain.generate(inputs)
        reranked.reranker.length_penalty = 1.0
        assert any(reranked.generate(inputs) != plain.generate(inputs)
                   for inputs in batches)

    def test_end_to_end_decode_with_the_tiny_clip(self, cfg, tiny_clip):
        """Candidates are the W beams decoded; cosines are the text
        tower's against ``global_feat``; the caption is the fused argmax;
        the CLIP adds nothing to the state dict or the parameters."""
        plain, reranked = plain_and_reranked(cfg, tiny_clip, weight=0.75)
        assert reranked.state_dict().keys() == plain.state_dict().keys()
        assert len(list(reranked.parameters())) == len(
            list(plain.parameters()))
        inputs = features(seed=5)
        found = reranked.caption_candidates(inputs)
        memory, mask = plain.encode(inputs, drop_masked=True)
        beams, log_probs = plain.decoder.generate(
            memory, mask, beam_size=3, max_len=8, all_beams=True)
        assert found['captions'] == [
            decode_ids(plain.tokenizer, row) for row in beams]
        assert torch.equal(found['log_probs'], log_probs)
        tower, tokenizer = reranked.reranker.tower, reranked.reranker.tokenizer
        for b, captions in enumerate(found['captions']):
            with torch.no_grad():
                text = tower.encode_text(tokenizer(captions))  # (W, Dg)
            cos = F.cosine_similarity(inputs['global_feat'][b:b + 1], text)
            torch.testing.assert_close(found['cosines'][b], cos)
        fused = fused_scores(found['log_probs'], found['lengths'],
                             found['cosines'], weight=0.75,
                             length_penalty=1.0)
        expected = [captions[i] for captions, i in zip(
            found['captions'], fused.argmax(-1).tolist())]
        captions = [s.pred_caption for s in reranked(inputs, mode='predict')]
        assert captions == expected
        assert captions != plain.generate(inputs)  # CLIP changed a pick
        reranked.train()
        assert not reranked.reranker.tower.training

    def test_clip_of_another_width_is_refused(self, cfg, tiny_clip):
        _, reranked = plain_and_reranked(cfg, tiny_clip)
        with pytest.raises(ValueError, match='use the CLIP that extracted'):
            reranked.reranker.cosines(torch.randn(2, 48), [['a'], ['b']])
