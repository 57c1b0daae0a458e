// Settings → Recovery policy: presets, the everyday values in operator words and units, and every
// raw value under "Advanced". One form, one set of values: the plain fields only show and convert.

import { useEffect, useState } from "preact/hooks";

import { type Backend, BackendError } from "./backend";
import type { PresetInfo } from "./generated/api";
import { type Key, useI18n } from "./i18n";
import {
  POLICY_GROUPS,
  type PolicyField,
  type PolicyFields,
  fieldOfMessage,
  fromShown,
  helpKey,
  labelKey,
  matchesPreset,
  parsePolicy,
  toFields,
  toShown,
  withPreset,
} from "./policy";

/** Where a refusal goes: next to its field (`key`), or below the form when it names none. */
type Refusal = { key: string | null; text: string };

const inputId = (key: string, plain: boolean) => `pol-${plain ? "" : "raw-"}${key.replace(".", "-")}`;

/** A value shown in its unit. While focused it keeps the text as typed ("1." stays "1."). */
function UnitInput(props: { id: string; raw: string; field: PolicyField; describedBy: string; invalid: boolean; onRaw: (raw: string) => void }) {
  const [draft, setDraft] = useState<string | null>(null);
  // Typing fires input; a field cleared or filled in by other means may fire only change.
  const typed = (e: Event) => {
    const text = (e.currentTarget as HTMLInputElement).value;
    setDraft(text);
    props.onRaw(fromShown(text, props.field));
  };
  return (
    <input
      id={props.id}
      inputMode="decimal"
      value={draft ?? toShown(props.raw, props.field)}
      aria-describedby={props.describedBy}
      aria-invalid={props.invalid}
      onFocus={() => setDraft(toShown(props.raw, props.field))}
      onBlur={() => setDraft(null)}
      onInput={typed}
      onChange={typed}
    />
  );
}

export function PolicyForm({ backend }: { backend: Backend }) {
  const { t } = useI18n();
  const [fields, setFields] = useState<PolicyFields | null>(null);
  const [presets, setPresets] = useState<PresetInfo[]>([]);
  const [refusal, setRefusal] = useState<Refusal | null>(null);
  const [saved, setSaved] = useState(false);
  const [advanced, setAdvanced] = useState(false);
  useEffect(() => {
    backend.getPolicy().then(
      (v) => setFields(toFields(v)),
      (e) => setRefusal({ key: null, text: BackendError.from(e).message }),
    );
    backend.policyPresets().then(setPresets, () => setPresets([]));
  }, []);
  if (!fields) return refusal ? <p class="error" role="alert">{refusal.text}</p> : null;

  const allKeys = Object.entries(fields).flatMap(([s, keys]) => Object.keys(keys).map((k) => `${s}.${k}`));
  const plainKeys = new Set(POLICY_GROUPS.flatMap((g) => g.fields.map((f) => f.key)));
  const raw = (key: string) => {
    const [s, k] = key.split(".");
    return fields[s]?.[k];
  };
  const set = (key: string, v: string | boolean) => {
    const [s, k] = key.split(".");
    setFields({ ...fields, [s]: { ...fields[s], [k]: v } });
    setSaved(false);
  };
  const refuse = (key: string | null, text: string) => {
    setRefusal({ key, text });
    // A value only the raw list shows is refused there: open it so the message is seen.
    if (key && !plainKeys.has(key)) setAdvanced(true);
  };
  const save = async (e: Event) => {
    e.preventDefault();
    setSaved(false);
    const parsed = parsePolicy(fields);
    if ("bad" in parsed) {
      const label = plainKeys.has(parsed.bad) ? t(labelKey(parsed.bad)) : parsed.bad;
      refuse(parsed.bad, t("notANumber", { key: label }));
      return;
    }
    try {
      setFields(toFields(await backend.setPolicy(parsed.values)));
      setRefusal(null);
      setSaved(true);
    } catch (err) {
      const message = BackendError.from(err).message;
      refuse(fieldOfMessage(message, allKeys), message);
    }
  };
  const errorOf = (key: string, plain: boolean) =>
    refusal?.key === key && (plain || !plainKeys.has(key) || advanced) ? (
      <span class="field-error" id={`${inputId(key, plain)}-error`} role="alert">
        {refusal.text}
      </span>
    ) : null;

  return (
    <form onSubmit={save} data-testid="policy-form" class="policy-form">
      {presets.length > 0 && (
        <fieldset class="presets" data-testid="presets">
          <legend>{t("presets")}</legend>
          <p class="help">{t("presetsHelp")}</p>
          <div class="preset-row">
            {presets.map((p) => (
              <button
                key={p.name}
                type="button"
                class="preset"
                aria-pressed={matchesPreset(fields, p.values)}
                aria-describedby={`preset-${p.name}-help`}
                onClick={() => {
                  setFields(withPreset(fields, p.values));
                  setSaved(false);
                  setRefusal(null);
                }}
              >
                <strong>{t(`preset.${p.name}` as Key)}</strong>
                <span id={`preset-${p.name}-help`} class="help">
                  {t(`preset.${p.name}.help` as Key)}
                </span>
              </button>
            ))}
          </div>
        </fieldset>
      )}
      <div class="policy-groups">
        {POLICY_GROUPS.map((g) => (
          <fieldset key={g.id} data-testid={`policy-group-${g.id}`}>
            <legend>{t(`polGroup.${g.id}` as Key)}</legend>
            {g.fields.map((f) => {
              const v = raw(f.key);
              if (typeof v !== "string") return null;
              const id = inputId(f.key, true);
              const unit = t(`unit.${f.shown}` as Key);
              return (
                <div class="policy-field" key={f.key}>
                  <label for={id}>{t(labelKey(f.key))}</label>
                  <span class="with-unit">
                    <UnitInput
                      id={id}
                      raw={v}
                      field={f}
                      describedBy={`${id}-help${refusal?.key === f.key ? ` ${id}-error` : ""}`}
                      invalid={refusal?.key === f.key}
                      onRaw={(x) => set(f.key, x)}
                    />
                    {unit && <span class="unit">{unit}</span>}
                  </span>
                  <span class="help" id={`${id}-help`}>
                    {t(helpKey(f.key))}
                  </span>
                  {errorOf(f.key, true)}
                </div>
              );
            })}
          </fieldset>
        ))}
      </div>
      <details class="policy-advanced" open={advanced} onToggle={(e) => setAdvanced((e.currentTarget as HTMLDetailsElement).open)}>
        <summary>{t("advanced")}</summary>
        <div class="policy-grid" data-testid="policy-raw">
          {Object.entries(fields).map(([section, keys]) => (
            <fieldset key={section}>
              <legend>{section}</legend>
              {Object.entries(keys).map(([key, v]) => {
                const name = `${section}.${key}`;
                const id = inputId(name, false);
                return typeof v === "boolean" ? (
                  <label key={key} class="check">
                    <input type="checkbox" id={id} name={name} checked={v} onChange={(e) => set(name, (e.currentTarget as HTMLInputElement).checked)} /> {key}
                  </label>
                ) : (
                  <div class="policy-field" key={key}>
                    <label for={id}>{key}</label>
                    <input
                      id={id}
                      name={name}
                      inputMode="decimal"
                      value={v}
                      aria-invalid={refusal?.key === name}
                      aria-describedby={refusal?.key === name ? `${id}-error` : undefined}
                      onInput={(e) => set(name, (e.currentTarget as HTMLInputElement).value)}
                      onChange={(e) => set(name, (e.currentTarget as HTMLInputElement).value)}
                    />
                    {errorOf(name, false)}
                  </div>
                );
              })}
            </fieldset>
          ))}
        </div>
      </details>
      <button type="submit" class="primary">
        {t("save")}
      </button>
      {refusal && refusal.key === null && (
        <p class="error" role="alert" data-testid="policy-msg">
          {refusal.text}
        </p>
      )}
      {saved && (
        <p class="ok" role="status" data-testid="policy-msg">
          {t("saved")} {t("policyHelp")}
        </p>
      )}
    </form>
  );
}
