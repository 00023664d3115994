/**
 * PEFT adapter folders (adapter_config.json + adapter_model.safetensors) as merge-ready data:
 * for each adapted module, its LoRA A/B (or embedding A/B) tensors, rank, alpha and scale, and
 * the DoRA magnitude vector when the adapter uses DoRA.
 *
 * Scale = alpha / r, or alpha / sqrt(r) with use_rslora, with r and alpha per module from
 * rank_pattern / alpha_pattern when a pattern matches the module path (PEFT's rule: the pattern
 * must match a whole dotted suffix of the path). Only LoRA (and DoRA, which is LoRA with
 * use_dora) is accepted; other adapter types are refused by name.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PeftcError } from '../errors.js';
import type { Tensor } from '../ir/tensor.js';
import { readSafetensors } from './safetensors.js';

export interface LoraConfig {
  peftType: string;
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  useDora: boolean;
  fanInFanOut: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  bias: string;
  /** Modules trained outright and saved whole (a classifier head...). */
  modulesToSave: string[];
  targetModules: string[] | string | null;
}

export interface LoraModule {
  /** Module path as PEFT names it inside the base model, e.g. model.layers.0.self_attn.q_proj. */
  path: string;
  kind: 'linear' | 'embedding';
  /** linear: [r, in]; embedding: [r, num_embeddings]. */
  a: Tensor;
  /** linear: [out, r]; embedding: [embedding_dim, r]. */
  b: Tensor;
  /** DoRA magnitude, one per output feature. */
  magnitude?: Tensor;
  rank: number;
  alpha: number;
  scale: number;
}

export interface Adapter {
  dir: string;
  config: LoraConfig;
  modules: LoraModule[];
  /** Weight of this adapter's delta when several are combined (--lora DIR:WEIGHT). */
  weight: number;
  /**
   * Whole tensors the adapter trained outright, by the base model's parameter name: biases
   * (bias 'all' / 'lora_only') and the parameters of modules_to_save. PEFT's merge_and_unload
   * keeps them as trained, so they replace the base model's (passes/tensor-override.ts).
   */
  replaced: Map<string, Tensor>;
}

function parseConfig(dir: string): LoraConfig {
  const file = join(dir, 'adapter_config.json');
  if (!existsSync(file)) throw new PeftcError(`${dir}: not a PEFT adapter folder (no adapter_config.json)`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new PeftcError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const peftType = String(raw.peft_type ?? 'LORA').toUpperCase();
  if (peftType !== 'LORA') {
    throw new PeftcError(`${file}: adapter type ${peftType} is not supported; peftc merges LoRA and DoRA (LoRA with use_dora) adapters`);
  }
  const num = (k: string, fallback?: number): number => {
    const v = raw[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new PeftcError(`${file}: '${k}' must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const bias = String(raw.bias ?? 'none');
  if (!['none', 'all', 'lora_only'].includes(bias)) throw new PeftcError(`${file}: bias='${bias}' is not one of PEFT's bias modes (none, all, lora_only)`);
  const modulesToSave = Array.isArray(raw.modules_to_save) ? (raw.modules_to_save as unknown[]).map(String) : [];
  const config: LoraConfig = {
    peftType,
    r: num('r', 8),
    loraAlpha: num('lora_alpha', 8),
    useRslora: raw.use_rslora === true,
    useDora: raw.use_dora === true,
    fanInFanOut: raw.fan_in_fan_out === true,
    rankPattern: (raw.rank_pattern ?? {}) as Record<string, number>,
    alphaPattern: (raw.alpha_pattern ?? {}) as Record<string, number>,
    bias,
    modulesToSave,
    targetModules: (raw.target_modules ?? null) as LoraConfig['targetModules'],
  };
  return config;
}

/** PEFT's pattern rule: a key matches when it equals a whole dotted suffix of the module path. */
export function matchPattern(patterns: Record<string, number>, path: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${key})$`);
    } catch {
      re = new RegExp(`^(?:.*\\.)?${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
    }
    if (re.test(path)) return value;
  }
  return undefined;
}

const SUFFIXES: Array<[RegExp, 'a' | 'b' | 'ea' | 'eb' | 'm']> = [
  [/^(.*)\.lora_A(?:\.[^.]+)?\.weight$/, 'a'],
  [/^(.*)\.lora_B(?:\.[^.]+)?\.weight$/, 'b'],
  [/^(.*)\.lora_embedding_A(?:\.[^.]+)?$/, 'ea'],
  [/^(.*)\.lora_embedding_B(?:\.[^.]+)?$/, 'eb'],
  [/^(.*)\.lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?$/, 'm'],
];

export function loadAdapter(dir: string, weight = 1): Adapter {
  const config = parseConfig(dir);
  const file = join(dir, 'adapter_model.safetensors');
  if (!existsSync(file)) {
    const bin = existsSync(join(dir, 'adapter_model.bin')) ? ' (it has adapter_model.bin, a pickle; re-save it with safe_serialization=True)' : '';
    throw new PeftcError(`${dir}: no adapter_model.safetensors${bin}`);
  }
  const st = readSafetensors(file);
  const parts = new Map<string, Partial<Record<'a' | 'b' | 'ea' | 'eb' | 'm', Tensor>>>();
  const unknown: string[] = [];
  const replaced = new Map<string, Tensor>();
  for (const [key, tensor] of st.tensors) {
    const hit = SUFFIXES.map(([re, role]) => [key.match(re), role] as const).find(([m]) => m);
    if (!hit) {
      // PEFT saves trained biases and modules_to_save parameters under the base model's names
      // (the 'modules_to_save.<adapter>' and 'base_layer' infixes removed).
      const name = key.replace(/^base_model\.model\./, '').replace(/\.modules_to_save(?:\.[^.]+)?\./, '.').replace(/\.base_layer\./, '.');
      const isBias = name.endsWith('.bias') && config.bias !== 'none';
      const inSaved = config.modulesToSave.some((m) => name.startsWith(`${m}.`) || name.includes(`.${m}.`));
      if (isBias || inSaved) replaced.set(name, tensor);
      else unknown.push(key);
      continue;
    }
    const path = hit[0]![1]!.replace(/^base_model\.model\./, '');
    const entry = parts.get(path) ?? {};
    entry[hit[1]] = tensor;
    parts.set(path, entry);
  }
  if (unknown.length) {
    throw new PeftcError(`${file}: tensors that are not LoRA/DoRA weights: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}`);
  }
  const modules: LoraModule[] = [];
  for (const [path, p] of [...parts].sort((x, y) => x[0].localeCompare(y[0]))) {
    const embedding = p.ea !== undefined || p.eb !== undefined;
    const a = embedding ? p.ea : p.a;
    const b = embedding ? p.eb : p.b;
    if (!a || !b) throw new PeftcError(`${file}: module '${path}' has ${a ? 'lora_A' : 'lora_B'} but not ${a ? 'lora_B' : 'lora_A'}`);
    if (a.dims.length !== 2 || b.dims.length !== 2 || a.dims[0] !== b.dims[1]) {
      throw new PeftcError(`${file}: module '${path}' has A[${a.dims.join(',')}] and B[${b.dims.join(',')}], which do not form a rank-r product B·A`);
    }
    const rank = a.dims[0]!;
    const declared = matchPattern(config.rankPattern, path) ?? config.r;
    if (declared !== rank) throw new PeftcError(`${file}: module '${path}' has rank ${rank} but the config says r=${declared}`);
    const alpha = matchPattern(config.alphaPattern, path) ?? config.loraAlpha;
    const scale = config.useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
    if (p.m && !config.useDora) throw new PeftcError(`${file}: module '${path}' has a DoRA magnitude but use_dora is not set`);
    if (config.useDora && !p.m && !embedding) throw new PeftcError(`${file}: use_dora is set but module '${path}' has no lora_magnitude_vector`);
    modules.push({ path, kind: embedding ? 'embedding' : 'linear', a, b, magnitude: p.m, rank, alpha, scale });
  }
  if (modules.length === 0 && replaced.size === 0) throw new PeftcError(`${file}: holds no LoRA weights`);
  return { dir, config, modules, weight, replaced };
}

/** Parses a --lora argument: "DIR" or "DIR:WEIGHT". */
export function parseLoraArg(arg: string): { dir: string; weight: number } {
  const m = arg.match(/^(.*):(-?\d+(?:\.\d+)?(?:e-?\d+)?)$/i);
  if (m && m[1]) return { dir: m[1], weight: Number(m[2]) };
  return { dir: arg, weight: 1 };
}
