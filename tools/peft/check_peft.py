"""Opens our LoRA adapter directory with the real `peft` and compares logits (GPU check script).

    python3 tools/peft/check_peft.py DIR     # DIR written by tools/peft/make-adapter.mjs

PeftModel.from_pretrained(base, DIR/adapter) must load every tensor by its PEFT name (a missing or
unexpected key is an error here), its logits must equal ours (adapters applied in our forward)
and those of our merged export opened by transformers, within 1e-4.
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

d = sys.argv[1] if len(sys.argv) > 1 else ".peftcheck"
ours = json.load(open(f"{d}/ours.json"))
ids = torch.tensor(ours["ids"])
base = AutoModelForCausalLM.from_pretrained(f"{d}/base", torch_dtype=torch.float32)
peft_model = PeftModel.from_pretrained(base, f"{d}/adapter")
sd = peft_model.state_dict()
lora_keys = [k for k in sd if "lora_" in k]
print(f"peft loaded {len(lora_keys)} LoRA tensors, config {peft_model.peft_config['default'].r=} {peft_model.peft_config['default'].lora_alpha=} targets={sorted(peft_model.peft_config['default'].target_modules)}")
with torch.no_grad():
    lp = peft_model(ids).logits.float()
    merged = AutoModelForCausalLM.from_pretrained(f"{d}/merged", torch_dtype=torch.float32)
    lm = merged(ids).logits.float()
    bl = AutoModelForCausalLM.from_pretrained(f"{d}/base", torch_dtype=torch.float32)(ids).logits.float()
o = torch.tensor(ours["logits"])
res = {
    "peft_vs_ours": float((lp - o).abs().max()),
    "merged_vs_ours": float((lm - o).abs().max()),
    "peft_vs_merged": float((lp - lm).abs().max()),
    "adapters_change_base_by": float((lp - bl).abs().max()),
}
print(json.dumps(res))
ok = res["peft_vs_ours"] < 1e-4 and res["merged_vs_ours"] < 1e-4 and res["adapters_change_base_by"] > 1e-3
print("PEFT CHECK", "OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
