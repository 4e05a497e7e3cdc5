"""The language side of the small configs: a word-level tokenizer trained offline on the training
texts, and a small Llama-architecture decoder built from a config (random weights).

Word-level, lower-cased, split on whitespace and punctuation: every word of the training texts is
one token (so the level words are single tokens by construction), unknown words read as <unk>, and
decoding joins words with spaces and re-attaches punctuation. Saved as tokenizer.json with
save_pretrained, it loads with AutoTokenizer anywhere.
"""

from __future__ import annotations

from ..weights import optional_import

SPECIALS = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}


def train_tokenizer(texts, owner: str = "calm"):
    """A PreTrainedTokenizerFast whose vocabulary is every word in `texts` (BOS added on encode)."""
    tokenizers = optional_import("tokenizers", "train", owner)
    transformers = optional_import("transformers", "train", owner)
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.WordLevel(unk_token=SPECIALS["unk_token"]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins with spaces, tidies " ." and " '"
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIALS.values()), min_frequency=1)
    tok.train_from_iterator(sorted(set(texts)), trainer=trainer)  # sorted: the vocabulary does not depend on order
    bos = tok.token_to_id(SPECIALS["bos_token"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)


def small_decoder(
    vocab_size: int, hidden: int, layers: int, heads: int, max_positions: int, tokenizer, owner: str = "calm"
):
    """A Llama-architecture causal LM with random weights, sized for CPU training."""
    transformers = optional_import("transformers", "train", owner)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return transformers.LlamaForCausalLM(config)
