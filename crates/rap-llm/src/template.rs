//! Conversation templates: turning a `&[Message]` into the exact prompt string a model was
//! trained on, and the stop strings that end its answers.
//!
//! Built-in templates (byte-exact ports of LLaVA's conversation styles):
//! - `vicuna_v1` (what RAP-LLaVA was trained with):
//!   `{system} USER: {msg} ASSISTANT: {reply}</s>USER: {msg} ASSISTANT:`
//! - `llava_v0`: `{system}###Human: {msg}###Assistant: {reply}###Human: {msg}###Assistant:`
//! - `phi3_instruct` (RAP-Phi3-V):
//!   `<|system|>\n{system}<|end|>\n<|user|>\n{msg}<|end|>\n<|assistant|>\n{reply}<|end|>\n...`
//! - `chatml`: `<|im_start|>{role}\n{content}<|im_end|>\n`..., then `<|im_start|>assistant\n`.
//!
//! plus [`JinjaTemplate`], a model's own chat template (the `tokenizer.chat_template` string of a
//! GGUF file or `tokenizer_config.json`), rendered with minijinja configured as transformers'
//! `apply_chat_template` configures Jinja2 (`trim_blocks`, `lstrip_blocks`, loop controls,
//! `raise_exception`, `strftime_now`, Python string methods).
//!
//! Image parts render as `<image>`. Text parts pass through [`neutralize`], so no text
//! (concept info, a user's turn, an earlier answer) can forge a marker of the template; the RAP
//! layout's own text holds no marker, so this changes nothing else.

use crate::layout::IMAGE_PLACEHOLDER;
use crate::neutralize::neutralize;
use rap_core::{Error, Message, Part, Result, Role};
use std::fmt;

/// LLaVA's `v1` system text (RAP-LLaVA).
pub const VICUNA_V1_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";
/// LLaVA's `v0` system text.
pub const LLAVA_V0_SYSTEM: &str = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";
/// RAP-Phi3-V's system text.
pub const PHI3_SYSTEM: &str = "You are a helpful AI assistant.";

/// Which conversation template a model uses.
#[derive(Clone)]
pub enum Template {
    VicunaV1,
    LlavaV0,
    Phi3Instruct,
    ChatMl,
    Jinja(Box<JinjaTemplate>),
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names accepted by [`Template::builtin`].
pub const BUILTIN_NAMES: &[&str] = &["vicuna_v1", "llava_v0", "phi3_instruct", "chatml"];

impl Template {
    /// A built-in template by name (`vicuna_v1`, `llava_v0`, `phi3_instruct`, `chatml`).
    pub fn builtin(name: &str) -> Result<Template> {
        match name {
            "vicuna_v1" => Ok(Template::VicunaV1),
            "llava_v0" => Ok(Template::LlavaV0),
            "phi3_instruct" => Ok(Template::Phi3Instruct),
            "chatml" => Ok(Template::ChatMl),
            other => Err(Error::invalid(format!(
                "unknown template {other:?}: use one of {}",
                BUILTIN_NAMES.join(", ")
            ))),
        }
    }

    /// The template's name (`jinja` for a model's own template).
    pub fn name(&self) -> &'static str {
        match self {
            Template::VicunaV1 => "vicuna_v1",
            Template::LlavaV0 => "llava_v0",
            Template::Phi3Instruct => "phi3_instruct",
            Template::ChatMl => "chatml",
            Template::Jinja(_) => "jinja",
        }
    }

    /// Strings that end an answer in this template (pass them as
    /// [`GenerationParams::stop`](rap_core::GenerationParams)).
    pub fn stop_strings(&self) -> Vec<String> {
        let v: &[&str] = match self {
            Template::VicunaV1 => &["</s>", "USER:"],
            Template::LlavaV0 => &["###"],
            Template::Phi3Instruct => &["<|end|>", "<|endoftext|>"],
            Template::ChatMl => &["<|im_end|>"],
            Template::Jinja(j) => return j.stop_strings(),
        };
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Renders a conversation. With `add_generation_prompt`, the prompt ends with the opening of
    /// the assistant's turn (`ASSISTANT:`, `<|assistant|>\n`...), ready for generation.
    ///
    /// A system message, if any, must come first; without one the template's default system
    /// text is used (none for `chatml`). Roles must otherwise alternate user / assistant,
    /// starting with the user.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        if let Template::Jinja(j) = self {
            return j.render(messages, add_generation_prompt);
        }
        let (system, turns) = split_system(messages)?;
        check_alternation(turns)?;
        let mut s = String::new();
        match self {
            Template::VicunaV1 => {
                s.push_str(system.as_deref().unwrap_or(VICUNA_V1_SYSTEM));
                s.push(' ');
                for m in turns {
                    match m.role {
                        Role::User => {
                            s.push_str("USER: ");
                            s.push_str(&content(m));
                            s.push(' ');
                        }
                        _ => {
                            s.push_str("ASSISTANT: ");
                            s.push_str(&content(m));
                            s.push_str("</s>");
                        }
                    }
                }
                if add_generation_prompt {
                    s.push_str("ASSISTANT:");
                }
            }
            Template::LlavaV0 => {
                s.push_str(system.as_deref().unwrap_or(LLAVA_V0_SYSTEM));
                s.push_str("###");
                for m in turns {
                    s.push_str(if m.role == Role::User {
                        "Human: "
                    } else {
                        "Assistant: "
                    });
                    s.push_str(&content(m));
                    s.push_str("###");
                }
                if add_generation_prompt {
                    s.push_str("Assistant:");
                }
            }
            Template::Phi3Instruct => {
                s.push_str("<|system|>\n");
                s.push_str(system.as_deref().unwrap_or(PHI3_SYSTEM));
                s.push_str("<|end|>");
                for m in turns {
                    s.push_str(if m.role == Role::User {
                        "\n<|user|>\n"
                    } else {
                        "\n<|assistant|>\n"
                    });
                    s.push_str(&content(m));
                    s.push_str("<|end|>");
                }
                if add_generation_prompt {
                    s.push_str("\n<|assistant|>\n");
                }
            }
            Template::ChatMl => {
                if let Some(sys) = &system {
                    s.push_str("<|im_start|>system\n");
                    s.push_str(sys);
                    s.push_str("<|im_end|>\n");
                }
                for m in turns {
                    s.push_str(if m.role == Role::User {
                        "<|im_start|>user\n"
                    } else {
                        "<|im_start|>assistant\n"
                    });
                    s.push_str(&content(m));
                    s.push_str("<|im_end|>\n");
                }
                if add_generation_prompt {
                    s.push_str("<|im_start|>assistant\n");
                }
            }
            Template::Jinja(_) => unreachable!("handled above"),
        }
        Ok(s)
    }
}

/// A message's content as template text: neutralised text, `<image>` for each image.
fn content(m: &Message) -> String {
    let mut s = String::new();
    for p in &m.parts {
        match p {
            Part::Text(t) => s.push_str(&neutralize(t)),
            Part::Image(_) => s.push_str(IMAGE_PLACEHOLDER),
        }
    }
    s
}

fn split_system(messages: &[Message]) -> Result<(Option<String>, &[Message])> {
    match messages.first() {
        Some(m) if m.role == Role::System => Ok((Some(content(m)), &messages[1..])),
        _ => Ok((None, messages)),
    }
}

fn check_alternation(turns: &[Message]) -> Result<()> {
    for (i, m) in turns.iter().enumerate() {
        let want = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if m.role != want {
            return Err(Error::invalid(format!(
                "conversation turn {} is a {:?} message where a {:?} message was expected \
                 (a system message may only come first; then user and assistant alternate)",
                i + 1,
                m.role,
                want
            )));
        }
    }
    Ok(())
}

/// A model's own Jinja chat template (as found in GGUF metadata `tokenizer.chat_template`).
#[derive(Clone)]
pub struct JinjaTemplate {
    env: std::sync::Arc<minijinja::Environment<'static>>,
    source: String,
    bos_token: String,
    eos_token: String,
}

const JINJA_NAME: &str = "chat_template";

impl JinjaTemplate {
    /// Compiles `source` with the model's BOS and EOS token strings (templates use them as
    /// `bos_token` / `eos_token`). A syntax error names the template and line.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| Error::Model(format!("chat template syntax config: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(JINJA_NAME, source.clone())
            .map_err(|e| {
                Error::Model(format!("the model's chat template does not compile: {e}"))
            })?;
        Ok(JinjaTemplate {
            env: std::sync::Arc::new(env),
            source,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The EOS token, plus the end-of-turn markers the template writes.
    pub fn stop_strings(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.eos_token.is_empty() {
            v.push(self.eos_token.clone());
        }
        for m in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
        ] {
            if self.source.contains(m) && !v.iter().any(|s| s == m) {
                v.push(m.to_string());
            }
        }
        v
    }

    /// Renders the conversation: `messages` as a list of `{role, content}` with content a
    /// string (images as `<image>`), plus `add_generation_prompt`, `bos_token`, `eos_token`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                minijinja::context! { role => role, content => content(m) }
            })
            .collect();
        let tmpl = self
            .env
            .get_template(JINJA_NAME)
            .map_err(|e| Error::Model(format!("chat template: {e}")))?;
        tmpl.render(minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        })
        .map_err(|e| Error::Model(format!("the model's chat template failed to render: {e:#}")))
    }
}

fn raise_exception(msg: String) -> std::result::Result<minijinja::Value, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!("the chat template raised: {msg}"),
    ))
}

/// `strftime_now(format)` as transformers provides it, for the common directives
/// (`%d %m %Y %y %b %B %H %M %S %%`), in UTC.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime_utc(&format, secs)
}

fn strftime_utc(format: &str, unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = unix_secs.div_euclid(86_400);
    let rem = unix_secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mname = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('b') => out.push_str(&mname[..3]),
            Some('B') => out.push_str(mname),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_subset() {
        // 2024-07-26 13:05:09 UTC
        assert_eq!(
            strftime_utc("%d %b %Y %H:%M:%S %B %m %y %%", 1_722_949_509 - 86_400 * 11),
            "26 Jul 2024 13:05:09 July 07 24 %"
        );
    }

    #[test]
    fn unknown_builtin_is_an_error_naming_choices() {
        let e = Template::builtin("vicuna").unwrap_err().to_string();
        assert!(e.contains("vicuna_v1") && e.contains("\"vicuna\""), "{e}");
    }
}
