//! What a person reads or hears. The code appears here and in the provider
//! request, nowhere else.

use std::time::Duration;

use verifyd_providers::domain::{Channel, Code, CodeLength, EmailAddress, Locale, PhoneNumber};
use verifyd_providers::{Email, Sms, VoiceCall, WhatsApp, escape_markup};

use crate::delivery::gsm7::{self, Cost};
use crate::delivery::template::{Template, Values};

/// One language's built-in texts (templates: `{code}`, `{app}` and
/// `{expires_in}` are filled in; `{expires_in}` is the time left in that
/// language's words, see [`validity`]), used where the tenant has none.
struct Language {
    tag: &'static str,
    sms: &'static str,
    /// What a call reads: the text, then the digits.
    voice: &'static str,
    /// An email's subject (`{app}` only: the code stays out of inbox
    /// previews and lock screens) and the line that closes its body.
    email_subject: &'static str,
    email_ignore: &'static str,
    /// One minute, several minutes (`{n}` is the number).
    minutes: (&'static str, &'static str),
    /// One second, several seconds.
    seconds: (&'static str, &'static str),
}

const LANGUAGES: &[Language] = &[
    Language {
        tag: "en",
        sms: "Your {app} verification code is {code}. It expires in {expires_in}.",
        voice: "Your {app} verification code is {code}",
        email_subject: "Your {app} verification code",
        email_ignore: "If you did not ask for this code, you can ignore this email: nobody can use it without access to your mailbox.",
        minutes: ("{n} minute", "{n} minutes"),
        seconds: ("{n} second", "{n} seconds"),
    },
    Language {
        tag: "es",
        sms: "Tu código de verificación de {app} es {code}. Caduca en {expires_in}.",
        voice: "Tu código de verificación de {app} es {code}",
        email_subject: "Tu código de verificación de {app}",
        email_ignore: "Si no has pedido este código, puedes ignorar este correo: nadie puede usarlo sin acceder a tu buzón.",
        minutes: ("{n} minuto", "{n} minutos"),
        seconds: ("{n} segundo", "{n} segundos"),
    },
    Language {
        tag: "fr",
        sms: "Votre code de vérification {app} est {code}. Il expire dans {expires_in}.",
        voice: "Votre code de vérification {app} est {code}",
        email_subject: "Votre code de vérification {app}",
        email_ignore: "Si vous n'avez pas demandé ce code, ignorez cet e-mail : personne ne peut l'utiliser sans accès à votre boîte.",
        minutes: ("{n} minute", "{n} minutes"),
        seconds: ("{n} seconde", "{n} secondes"),
    },
    Language {
        tag: "de",
        sms: "Ihr {app} Bestätigungscode lautet {code}. Er läuft in {expires_in} ab.",
        voice: "Ihr {app} Bestätigungscode lautet {code}",
        email_subject: "Ihr {app} Bestätigungscode",
        email_ignore: "Wenn Sie diesen Code nicht angefordert haben, ignorieren Sie diese E-Mail: Ohne Zugriff auf Ihr Postfach kann ihn niemand nutzen.",
        minutes: ("{n} Minute", "{n} Minuten"),
        seconds: ("{n} Sekunde", "{n} Sekunden"),
    },
    Language {
        tag: "pt",
        sms: "Seu código de verificação {app} é {code}. Ele expira em {expires_in}.",
        voice: "Seu código de verificação {app} é {code}",
        email_subject: "Seu código de verificação {app}",
        email_ignore: "Se você não pediu este código, ignore este e-mail: ninguém pode usá-lo sem acesso à sua caixa de entrada.",
        minutes: ("{n} minuto", "{n} minutos"),
        seconds: ("{n} segundo", "{n} segundos"),
    },
    // Japanese counts without a plural.
    Language {
        tag: "ja",
        sms: "{app}の認証コードは{code}です。有効期限は{expires_in}です。",
        voice: "{app}の認証コードは{code}",
        email_subject: "{app}の認証コード",
        email_ignore: "このコードに心当たりがない場合は、このメールを無視してください。",
        minutes: ("{n}分", "{n}分"),
        seconds: ("{n}秒", "{n}秒"),
    },
];

fn known(locale: &Locale) -> Option<&'static Language> {
    LANGUAGES.iter().find(|l| l.tag == locale.language())
}

fn language(locale: &Locale) -> &'static Language {
    known(locale).unwrap_or(&LANGUAGES[0])
}

/// Whether verifyd can say a duration (`{expires_in}`) in the locale's language.
pub fn knows_durations(locale: &Locale) -> bool {
    known(locale).is_some()
}

/// The built-in text of a channel in a locale (English for a language
/// verifyd has no text in).
pub fn built_in(channel: Channel, locale: &Locale) -> Template {
    let language = language(locale);
    Template::built_in(match channel {
        Channel::Sms => language.sms,
        Channel::Voice => language.voice,
        // An email says what the SMS says; the closing line is added apart,
        // so a tenant's own text gets it too.
        Channel::Email => language.sms,
        // What an authentication template says in English; WhatsApp presets
        // it, in the template's language.
        Channel::Whatsapp => WHATSAPP_PRESET,
    })
}

/// The time left, rounded up, with its language's singular or plural: in
/// minutes from a minute on ("1 minute", "10 minutes"), in seconds below
/// ("30 seconds"), to five seconds, so that the second or so between making
/// the code and rendering its text does not turn a 60-second code into "59
/// seconds" or a 30-second one into "29 seconds".
fn validity(language: &Language, valid_for: Duration) -> String {
    let secs = valid_for.as_secs() + u64::from(valid_for.subsec_nanos() > 0);
    let secs = if secs < 60 { secs.div_ceil(5).max(1) * 5 } else { secs };
    let (n, (one, many)) = if secs < 60 { (secs, language.seconds) } else { (secs.div_ceil(60), language.minutes) };
    let form = if n == 1 { one } else { many };
    form.replace("{n}", &n.to_string())
}

/// What the longest text of an SMS template costs, for codes living up to
/// `longest_ttl`: the longest code (10 digits), and the longest way of
/// saying the time left (each form's word, with the most digits it takes).
pub fn sms_cost(template: &Template, app: &str, longest_ttl: Duration, locale: &Locale) -> Cost {
    let language = language(locale);
    let code = "0".repeat(usize::from(CodeLength::MAX));
    let longest_minutes = Duration::from_secs(longest_ttl.as_secs().max(120));
    [5, 55, 60, 120]
        .map(Duration::from_secs)
        .into_iter()
        .chain([longest_minutes])
        .map(|d| {
            let expires_in = validity(language, d);
            gsm7::cost(&template.render(&Values { code: &code, app, expires_in: &expires_in }))
        })
        .max_by_key(|c| (c.segments, c.length))
        .unwrap_or_else(|| gsm7::cost(""))
}

/// An example of the text, with a made-up code, for a team to read (a
/// call's as it is read: the text, then the digits).
pub fn example(template: &Template, channel: Channel, app: &str, ttl: Duration, locale: &Locale) -> String {
    let expires_in = validity(language(locale), ttl);
    let values = Values { code: "1234567", app, expires_in: &expires_in };
    match channel {
        Channel::Sms | Channel::Email | Channel::Whatsapp => template.render(&values),
        Channel::Voice => format!("{} 1, 2, 3, 4, 5, 6, 7", template.intro(&values)),
    }
}

pub struct Rendering<'a> {
    /// The tenant's display name, else `verification.app_name`.
    pub app_name: &'a str,
    /// The tenant's text for this channel and locale; `None`: the built-in one.
    pub template: Option<&'a Template>,
    pub locale: &'a Locale,
    pub code: &'a Code,
    /// What remains of the code's lifetime.
    pub valid_for: Duration,
    pub reference: String,
    /// A signed link to this call's script, for providers that fetch it.
    pub script_url: Option<String>,
}

impl Rendering<'_> {
    fn text(&self, channel: Channel) -> (Template, String) {
        let template = self.template.cloned().unwrap_or_else(|| built_in(channel, self.locale));
        (template, validity(language(self.locale), self.valid_for))
    }
}

pub fn sms(r: Rendering<'_>, to: &PhoneNumber) -> Sms {
    let (template, expires_in) = r.text(Channel::Sms);
    let body = template.render(&Values { code: r.code.expose(), app: r.app_name, expires_in: &expires_in });
    Sms { to: to.clone(), body, validity: r.valid_for, reference: r.reference }
}

/// WhatsApp's preset text of an authentication template, in English.
const WHATSAPP_PRESET: &str = "*{code}* is your verification code.";

/// A WhatsApp authentication template carries the code alone: WhatsApp
/// presets its text, in the template's language (the provider picks it by
/// the locale).
pub fn whatsapp(r: Rendering<'_>, to: &PhoneNumber) -> WhatsApp {
    WhatsApp {
        to: to.clone(),
        code: r.code.clone(),
        locale: r.locale.clone(),
        validity: r.valid_for,
        reference: r.reference,
    }
}

/// Stands for the code while the HTML part is escaped: private-use
/// characters, which escaping keeps and no built-in text holds.
const CODE_MARK: &str = "\u{E000}code\u{E001}";

/// A plain-text part (the text, then the language's closing line) and an
/// HTML part that says the same, escaped, with the code set large. The
/// subject names the app, never the code.
pub fn email(r: Rendering<'_>, to: &EmailAddress) -> Email {
    let (template, expires_in) = r.text(Channel::Email);
    let language = language(r.locale);
    let values = |code| Values { code, app: r.app_name, expires_in: &expires_in };
    let text = format!("{}\n\n{}\n", template.render(&values(r.code.expose())).trim_end(), language.email_ignore);
    let marked = template.render(&values(CODE_MARK));
    let code = format!(
        "<strong style=\"font-size:28px;letter-spacing:6px;font-family:monospace\">{}</strong>",
        r.code.expose()
    );
    let paragraphs: String = marked
        .split('\n')
        .filter(|line| !line.trim().is_empty())
        .map(|line| format!("<p>{}</p>\n", escape_markup(line).replace(CODE_MARK, &code)))
        .collect();
    let subject = Template::built_in(language.email_subject).render(&values(""));
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family:sans-serif;line-height:1.5\">\n{paragraphs}<p style=\"color:#666\">{ignore}</p>\n</body></html>\n",
        lang = escape_markup(r.locale.as_str()),
        title = escape_markup(&subject),
        ignore = escape_markup(language.email_ignore),
    );
    Email {
        to: to.clone(),
        from_name: r.app_name.to_owned(),
        subject,
        text,
        html,
        locale: r.locale.clone(),
        validity: r.valid_for,
        reference: r.reference,
    }
}

/// The call reads the text before the code, then the digits one by one, twice.
pub fn voice(r: Rendering<'_>, to: &PhoneNumber) -> VoiceCall {
    let (template, expires_in) = r.text(Channel::Voice);
    // The intro never holds the code: it is read digit by digit after it.
    let intro = template.intro(&Values { code: "", app: r.app_name, expires_in: &expires_in });
    VoiceCall {
        to: to.clone(),
        intro,
        code: r.code.clone(),
        repeat: 2,
        locale: r.locale.clone(),
        reference: r.reference,
        script_url: r.script_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendering<'a>(_to: &'a PhoneNumber, locale: &'a Locale, code: &'a Code) -> Rendering<'a> {
        Rendering {
            app_name: "Acme",
            template: None,
            locale,
            code,
            valid_for: Duration::from_secs(541),
            reference: "r".into(),
            script_url: None,
        }
    }

    #[test]
    fn sms_says_app_code_and_minutes_in_the_locale() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let code = Code::parse("0123456").unwrap();
        let en = sms(rendering(&to, &Locale::default(), &code), &to);
        assert_eq!(en.body, "Your Acme verification code is 0123456. It expires in 10 minutes.");
        assert_eq!(en.validity, Duration::from_secs(541));
        let fr = Locale::parse("fr-CA").unwrap();
        assert!(sms(rendering(&to, &fr, &code), &to).body.starts_with("Votre code de vérification Acme est 0123456"));
        let unknown = Locale::parse("xx").unwrap();
        assert!(sms(rendering(&to, &unknown, &code), &to).body.starts_with("Your Acme"));
    }

    #[test]
    fn the_time_left_is_singular_or_plural_and_in_seconds_below_a_minute() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let code = Code::parse("0123456").unwrap();
        let text = |lang: &str, secs: f64| {
            let locale = Locale::parse(lang).unwrap();
            let mut r = rendering(&to, &locale, &code);
            r.valid_for = Duration::from_secs_f64(secs);
            sms(r, &to).body
        };
        assert!(text("en", 60.0).ends_with("It expires in 1 minute."), "{}", text("en", 60.0));
        assert!(text("en", 57.2).ends_with("It expires in 1 minute."));
        assert!(text("en", 119.5).ends_with("It expires in 2 minutes."));
        assert!(text("en", 600.0).ends_with("It expires in 10 minutes."));
        assert!(text("en", 30.0).ends_with("It expires in 30 seconds."));
        assert!(text("en", 28.9).ends_with("It expires in 30 seconds."));
        assert!(text("en", 0.4).ends_with("It expires in 5 seconds."));
        assert!(text("es", 60.0).ends_with("Caduca en 1 minuto."));
        assert!(text("es", 30.0).ends_with("Caduca en 30 segundos."));
        assert!(text("fr", 60.0).ends_with("Il expire dans 1 minute."));
        assert!(text("fr", 45.0).ends_with("Il expire dans 45 secondes."));
        assert!(text("de", 60.0).ends_with("Er läuft in 1 Minute ab."));
        assert!(text("de", 30.0).ends_with("Er läuft in 30 Sekunden ab."));
        assert!(text("pt", 60.0).ends_with("Ele expira em 1 minuto."));
        assert!(text("pt", 10.0).ends_with("Ele expira em 10 segundos."));
        assert!(text("ja", 60.0).ends_with("有効期限は1分です。"));
        assert!(text("ja", 30.0).ends_with("有効期限は30秒です。"));
        for lang in ["en", "es", "fr", "de", "pt", "ja"] {
            assert!(!text(lang, 600.0).contains("{"), "{lang}: every placeholder is filled");
        }
    }

    #[test]
    fn an_email_has_a_subject_without_the_code_a_text_part_and_an_escaped_html_part() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let address = EmailAddress::parse("ada@example.com").unwrap();
        let code = Code::parse("0123456").unwrap();
        let fr = Locale::parse("fr").unwrap();
        let mut r = rendering(&to, &fr, &code);
        r.app_name = "Acme <Café & Co>";
        let email = email(r, &address);
        assert_eq!(email.subject, "Votre code de vérification Acme <Café & Co>");
        assert!(!email.subject.contains("0123456"));
        assert!(
            email
                .text
                .starts_with("Votre code de vérification Acme <Café & Co> est 0123456. Il expire dans 10 minutes.")
        );
        assert!(email.text.contains("Si vous n'avez pas demandé ce code"), "{}", email.text);
        assert!(email.html.contains("Acme &lt;Café &amp; Co&gt;"), "{}", email.html);
        assert!(!email.html.contains("<Café"), "the display name is escaped");
        assert!(email.html.contains(">0123456</strong>"));
        assert!(email.html.contains("<html lang=\"fr\">"));
        assert_eq!(email.from_name, "Acme <Café & Co>");
        assert_eq!(email.to, address);
        // A tenant's text keeps its lines, each a paragraph.
        let t = Template::parse("Hallo!\nCode: {code}\n{app}", Channel::Email, &fr, true).unwrap();
        let mut r = rendering(&to, &fr, &code);
        r.template = Some(&t);
        let html = super::email(r, &address).html;
        assert!(html.contains("<p>Hallo!</p>") && html.contains("<p>Acme</p>"), "{html}");
    }

    #[test]
    fn voice_reads_digits_twice() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let code = Code::parse("0123456").unwrap();
        let call = voice(rendering(&to, &Locale::default(), &code), &to);
        assert_eq!(call.intro, "Your Acme verification code is");
        assert_eq!(call.spoken_digits(), "0, 1, 2, 3, 4, 5, 6");
        assert_eq!(call.repeat, 2);
    }

    #[test]
    fn every_built_in_text_is_a_valid_template() {
        for l in LANGUAGES {
            let locale = Locale::parse(l.tag).unwrap();
            for channel in Channel::ALL.into_iter().filter(|c| *c != Channel::Whatsapp) {
                let text = built_in(channel, &locale);
                let parsed = Template::parse(text.source(), channel, &locale, true);
                assert_eq!(parsed.as_ref(), Ok(&text), "{} {channel}", l.tag);
            }
        }
    }

    #[test]
    fn a_tenant_template_is_filled_with_the_plural_of_its_language() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let code = Code::parse("0123456").unwrap();
        let de = Locale::parse("de").unwrap();
        let t = Template::parse("{app}: {code} gilt {expires_in}.", Channel::Sms, &de, true).unwrap();
        let mut r = rendering(&to, &de, &code);
        r.template = Some(&t);
        r.valid_for = Duration::from_secs(60);
        assert_eq!(sms(r, &to).body, "Acme: 0123456 gilt 1 Minute.");
        let v = Template::parse("Hier ist {app}. Ihr Code: {code}.", Channel::Voice, &de, true).unwrap();
        let mut r = rendering(&to, &de, &code);
        r.template = Some(&v);
        let call = voice(r, &to);
        assert_eq!(call.intro, "Hier ist Acme. Ihr Code:");
        assert_eq!(call.spoken_digits(), "0, 1, 2, 3, 4, 5, 6");
    }

    #[test]
    fn the_cost_is_that_of_the_longest_text() {
        let en = Locale::default();
        let t = Template::parse("{code} {expires_in}", Channel::Sms, &en, true).unwrap();
        // "0000000000 1440 minutes": ten digits, the most minutes a day of TTL takes.
        let cost = sms_cost(&t, "Acme", Duration::from_secs(86_400), &en);
        assert_eq!((cost.encoding, cost.length, cost.segments), (gsm7::Encoding::Gsm7, 23, 1));
        let cost = sms_cost(&t, "Acme", Duration::from_secs(600), &en);
        assert_eq!(cost.length, "0000000000 55 seconds".len());
        let ja = Locale::parse("ja").unwrap();
        let cost = sms_cost(&built_in(Channel::Sms, &ja), "Acme", Duration::from_secs(600), &ja);
        assert_eq!(cost.encoding, gsm7::Encoding::Ucs2);
    }
}
