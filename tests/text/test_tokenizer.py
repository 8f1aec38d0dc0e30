from unidit.runtime.text.tokenizer import (BOS, EOS, PAD, UNK, build_tokenizer, tokenize, tokenizer_from_json,
                                           unknown_words)

WORDS = ["a", "red", "cube", "on", "grey", "ball"]


def test_prompts_are_normalised_wrapped_and_padded():
    tokenizer = build_tokenizer(WORDS)
    ids, masks = tokenize(tokenizer, ["A red Cube!", "a  RÉD ball", ""])
    vocab = tokenizer.get_vocab()
    assert ids[0] == [vocab[BOS], vocab["a"], vocab["red"], vocab["cube"], vocab[EOS]]
    assert ids[1][:4] == [vocab[BOS], vocab["a"], vocab["red"], vocab["ball"]]
    assert ids[2] == [vocab[BOS], vocab[EOS], vocab[PAD], vocab[PAD], vocab[PAD]]
    assert masks[2] == [1, 1, 0, 0, 0]


def test_unknown_words_become_unk_and_are_reported():
    tokenizer = build_tokenizer(WORDS)
    ids, _ = tokenize(tokenizer, ["a fluorescent ball"])
    assert ids[0][2] == tokenizer.token_to_id(UNK)
    assert unknown_words(tokenizer, "a fluorescent ball, please") == ["fluorescent", "please"]


def test_long_prompts_are_truncated_and_json_round_trips():
    tokenizer = build_tokenizer(WORDS, max_length=6)
    ids, _ = tokenize(tokenizer, ["a red cube on grey a red cube on grey"])
    assert len(ids[0]) == 6
    again = tokenizer_from_json(tokenizer.to_str())
    assert tokenize(again, ["a red cube", "on grey"]) == tokenize(tokenizer, ["a red cube", "on grey"])
