//! What a subscriber texts the registry's short code, read (sans-IO): the
//! English commands and their Mandarin equivalents. The language a command
//! is written in is the language of its reply.

use crate::mologin::token;

/// A subscriber's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `UNBIND ALL` / `解绑全部`: every binding of the sender's number.
    UnbindAll,
    /// `UNBIND <code>` / `解绑 <code>`: one app's (the code in upper case
    /// as typed; matched against service codes case-blind).
    Unbind(String),
    /// `BINDINGS` / `查询绑定`: which apps the number is bound to.
    Bindings,
    /// `MOVE <new number>` / `换号 <new number>`, from the old number.
    MoveTo(String),
    /// `MOVE <token>` / `换号 <token>`, from the new number.
    MoveConfirm(String),
    /// Anything else (`HELP`, a typo): the list of commands.
    Help,
}

/// The language of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Mandarin (simplified).
    Zh,
}

impl Lang {
    /// The locale tag of the reply templates.
    pub fn locale(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }
}

const ZH_UNBIND_ALL: &[&str] = &["解绑全部", "全部解绑", "解绑所有", "解除全部绑定"];
const ZH_UNBIND: &[&str] = &["解除绑定", "解绑"];
const ZH_BINDINGS: &[&str] = &["查询绑定", "绑定查询", "查询"];
const ZH_MOVE: &[&str] = &["换号", "更换号码"];
const ZH_HELP: &[&str] = &["帮助"];

/// Reads a command (case, full-width letters and extra spaces aside).
pub fn parse(text: &str) -> (Command, Lang) {
    let folded: String = text.chars().map(token::fold).collect();
    let words: Vec<&str> = folded.split_whitespace().collect();
    let joined = words.concat();
    // Mandarin first: its commands are written with or without a space.
    if ZH_UNBIND_ALL.contains(&joined.as_str()) {
        return (Command::UnbindAll, Lang::Zh);
    }
    if ZH_BINDINGS.contains(&joined.as_str()) {
        return (Command::Bindings, Lang::Zh);
    }
    if ZH_HELP.contains(&joined.as_str()) {
        return (Command::Help, Lang::Zh);
    }
    for k in ZH_UNBIND {
        if let Some(rest) = joined.strip_prefix(k).filter(|r| !r.is_empty()) {
            return (Command::Unbind(rest.to_string()), Lang::Zh);
        }
    }
    for k in ZH_MOVE {
        if let Some(rest) = joined.strip_prefix(k).filter(|r| !r.is_empty()) {
            return (move_command(rest), Lang::Zh);
        }
    }
    if joined
        .chars()
        .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    {
        return (Command::Help, Lang::Zh);
    }
    let command = match words.as_slice() {
        ["UNBIND", "ALL"] => Command::UnbindAll,
        ["UNBIND", code] => Command::Unbind((*code).to_string()),
        ["BINDINGS"] | ["LIST"] => Command::Bindings,
        ["MOVE", rest @ ..] if !rest.is_empty() => move_command(&rest.concat()),
        _ => Command::Help,
    };
    (command, Lang::En)
}

/// Country codes whose subscribers get Mandarin help when what they sent
/// says nothing of their language (mainland China, Hong Kong, Macau, Taiwan).
const ZH_COUNTRIES: &[&str] = &["+86", "+852", "+853", "+886"];

/// The language of the reply to `sender`: the command's; for text that is
/// no command and has no Chinese in it, the sender's country's.
pub fn reply_lang(cmd: &Command, lang: Lang, sender: &str) -> Lang {
    if *cmd == Command::Help
        && lang == Lang::En
        && ZH_COUNTRIES.iter().any(|c| sender.starts_with(c))
    {
        Lang::Zh
    } else {
        lang
    }
}

/// `MOVE …`: a token from the new number, else the new number itself
/// (typed with spaces or dashes).
fn move_command(rest: &str) -> Command {
    let squeezed: String = rest.chars().filter(|c| *c != '-').collect();
    if token::is_token(&squeezed) {
        Command::MoveConfirm(squeezed)
    } else {
        Command::MoveTo(squeezed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_commands() {
        let en = |t: &str| parse(t);
        assert_eq!(en("UNBIND ALL"), (Command::UnbindAll, Lang::En));
        assert_eq!(en("  unbind   all "), (Command::UnbindAll, Lang::En));
        assert_eq!(en("ＵＮＢＩＮＤ　ＡＬＬ"), (Command::UnbindAll, Lang::En));
        assert_eq!(
            en("unbind bank"),
            (Command::Unbind("BANK".into()), Lang::En)
        );
        assert_eq!(en("Bindings"), (Command::Bindings, Lang::En));
        assert_eq!(
            en("move +44 7400 100201"),
            (Command::MoveTo("+447400100201".into()), Lang::En)
        );
        assert_eq!(
            en("MOVE abcd-2345"),
            (Command::MoveConfirm("ABCD2345".into()), Lang::En)
        );
        for other in ["HELP", "", "UNBIND", "UNBIND ALL NOW", "MOVE", "hello"] {
            assert_eq!(en(other), (Command::Help, Lang::En), "{other:?}");
        }
    }

    #[test]
    fn mandarin_commands_and_their_language() {
        assert_eq!(parse("解绑全部"), (Command::UnbindAll, Lang::Zh));
        assert_eq!(parse("全部 解绑"), (Command::UnbindAll, Lang::Zh));
        assert_eq!(
            parse("解绑 bank"),
            (Command::Unbind("BANK".into()), Lang::Zh)
        );
        assert_eq!(
            parse("解绑BANK"),
            (Command::Unbind("BANK".into()), Lang::Zh)
        );
        assert_eq!(parse("查询绑定"), (Command::Bindings, Lang::Zh));
        assert_eq!(
            parse("换号 13800138000"),
            (Command::MoveTo("13800138000".into()), Lang::Zh)
        );
        assert_eq!(
            parse("换号 ABCD2345"),
            (Command::MoveConfirm("ABCD2345".into()), Lang::Zh)
        );
        assert_eq!(parse("你好"), (Command::Help, Lang::Zh));
        assert_eq!(parse("帮助"), (Command::Help, Lang::Zh));
    }

    #[test]
    fn help_for_text_that_is_no_command_follows_the_senders_country() {
        let (cmd, lang) = parse("hello?");
        assert_eq!(reply_lang(&cmd, lang, "+8613800138000"), Lang::Zh);
        assert_eq!(reply_lang(&cmd, lang, "+85291234567"), Lang::Zh);
        assert_eq!(reply_lang(&cmd, lang, "+447400100500"), Lang::En);
        // A command in English is answered in English wherever it came from.
        let (cmd, lang) = parse("BINDINGS");
        assert_eq!(reply_lang(&cmd, lang, "+8613800138000"), Lang::En);
    }
}
