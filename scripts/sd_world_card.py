"""The miniature SD world's model card figures: loss curves, VAE reconstructions of held-out faces read
by the probe, the text encoder's agreement with the tiny CLIP it came from, and txt2img samples per
prompt (through ComfyUI's objects, as a workflow makes them).

    python scripts/sd_world_card.py [--cfg 5] [--steps 30] [--seeds 8]

Writes docs/sd_world/{vae_loss.png, unet_loss.png, vae_reconstructions.png, samples.png, card.json};
the training logs it reads are kept in docs/sd_world/ (copied there by the export commands).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_sdworld.comfy_import import import_comfy  # noqa: E402
from scripts.plotting import line_plot  # noqa: E402

OUT = ROOT / "docs" / "sd_world"
PROMPTS = ["a face", "a smiling face", "a frowning face", "a face with glasses", "a face without glasses",
           "a face with a hat", "a face without a hat", "a smiling face with glasses and with a hat"]


def curves(log: Path, keys: list[str]) -> dict:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {k: ([e["step"] for e in entries], [e[k] for e in entries]) for k in keys}, entries


def prompt_samples(model, clip, vae, probe, seeds: list[int], sig, cfg: float, picture: Path) -> dict:
    """txt2img of every prompt of ``PROMPTS`` from ``seeds`` (one row each, written to ``picture`` at 2x);
    returns the probe's mean face, smile, glasses and hat readings per prompt."""
    from hspace_core.images import strip
    from hspace_sdworld import sampling as sw

    rows, samples = [], {}
    for text in PROMPTS:
        imgs = sw.decode(vae, sw.sample(model, sw.encode(clip, text), sw.encode(clip, ""), sw.seed_noise(seeds), sig,
                                        cfg))
        rows.append(list(imgs))
        r = sw.read(probe, imgs)
        samples[text] = {k: round(float(r[k].mean()), 3) for k in ("face", "smile", "glasses", "hat")}
    grid = strip(rows)
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(picture)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", type=float, default=None, help="default: the recommended cfg (configs.RECOMMENDED)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import_comfy(cpu=True)
    from hspace_core.checkpoint_files import read_safetensors
    from hspace_core.demo.clip_world import EMBEDDED, load_tiny_clip
    from hspace_core.demo.faces import attribute_table, render, sample_faces
    from hspace_core.demo.probe import load_probe
    from hspace_core.demo.probe.evaluation import r2
    from hspace_core.images import strip
    from hspace_sdworld import sampling as sw
    from hspace_sdworld.configs import RECOMMENDED
    from hspace_sdworld.data import HELD_OUT_SEED
    from hspace_sdworld.models import load_demo

    cfg = args.cfg if args.cfg is not None else RECOMMENDED["cfg"]
    steps = args.steps or RECOMMENDED["steps"]
    OUT.mkdir(parents=True, exist_ok=True)
    card: dict = {}
    series, entries = curves(OUT / "vae_train_log.jsonl", ["loss", "psnr"])
    line_plot({"L1 + edge + KL loss": series["loss"]}, OUT / "vae_loss.png", title="VAE training loss (per 50 steps)",
              x_label="step", y_label="loss", log_y=True)
    card["vae_training"] = {"steps": entries[-1]["step"], "final_loss": entries[-1]["loss"],
                            "final_train_psnr": entries[-1]["psnr"]}
    series, entries = curves(OUT / "unet_train_log.jsonl", ["loss", "eps_mse"])
    line_plot({"weighted loss": series["loss"], "eps MSE": series["eps_mse"]}, OUT / "unet_loss.png",
              title="UNet training loss (per 50 steps)", x_label="step", y_label="loss", log_y=True)
    card["unet_training"] = {"steps": entries[-1]["step"], "final_loss": entries[-1]["loss"],
                             "final_eps_mse": entries[-1]["eps_mse"],
                             "captions_seen": entries[-1].get("captions_cached")}

    model, clip, vae = load_demo()
    probe = load_probe()

    # VAE: held-out faces through encode / decode, read by the probe
    faces = sample_faces(256, HELD_OUT_SEED)
    images = render(faces, 64)
    rec = torch.cat([sw.decode(vae, sw.encode_images(vae, images[i:i + 64])) for i in range(0, 256, 64)])
    mse = ((rec.clamp(-1, 1) - images) / 2).pow(2).flatten(1).mean(1)
    psnr = -10 * torch.log10(mse)
    truth = attribute_table(faces)
    read_rec, read_in = sw.read(probe, rec), sw.read(probe, images)
    card["vae_held_out"] = {
        "faces": 256, "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()),
        "probe_r2_on_reconstructions": {k: round(r2(read_rec[k], truth[k]), 4)
                                        for k in ("smile", "eye_size", "face_width", "skin_tone", "head_tilt")},
        "probe_r2_on_inputs": {k: round(r2(read_in[k], truth[k]), 4)
                               for k in ("smile", "eye_size", "face_width", "skin_tone", "head_tilt")},
        "glasses_accuracy": float(((read_rec["glasses"] > 0.5) == truth["glasses"].bool()).float().mean()),
        "hat_accuracy": float(((read_rec["hat"] > 0.5) == truth["hat"].bool()).float().mean()),
    }
    pairs = [[images[i], rec[i]] for i in range(8)]
    grid = strip([[t for p in pairs for t in p]])
    grid.resize((grid.width * 3, grid.height * 3), Image.NEAREST).save(OUT / "vae_reconstructions.png")

    # the text encoder is the tiny CLIP's text tower: the same token states
    tiny = load_tiny_clip()
    worst = 0.0
    for text in PROMPTS:
        toks = tiny.tokenizer([text])
        m = tiny.model
        with torch.no_grad():
            x = m.ln_final(m.transformer(m.token_embedding(toks) + m.positional_embedding, attn_mask=m.attn_mask))
        n = int(toks.argmax(-1)) + 1
        worst = max(worst, float((sw.encode(clip, text)[0][0][0, :n] - x[0, :n]).abs().max()))
    card["text_encoder"] = {"source": str(EMBEDDED.relative_to(ROOT)), "max_abs_difference_to_tiny_clip": worst,
                            "parameters": sum(v.numel() for v in read_safetensors(
                                ROOT / "hspace_sdworld" / "weights" / "text_encoder.safetensors")[0].values())}

    # txt2img per prompt
    seeds = list(range(args.seeds))
    samples = prompt_samples(model, clip, vae, probe, seeds, sw.sigmas(model, steps), cfg, OUT / "samples.png")
    card["samples"] = {"cfg": cfg, "steps": steps, "sampler": "euler (= DDIM)", "seeds": seeds, "prompts": PROMPTS,
                       "probe_means": samples}
    card["parameters"] = {"unet": sum(p.numel() for p in model.model.diffusion_model.parameters())}
    (OUT / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        main()
