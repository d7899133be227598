//! What a person reads or hears. The code appears here and in the provider
//! request, nowhere else.

use std::time::Duration;

use verifyd_providers::domain::{Code, Locale, PhoneNumber};
use verifyd_providers::{Sms, VoiceCall};

/// (language, SMS template, voice intro). `{code}`, `{app}`, `{minutes}` are filled in.
const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "en",
        "Your {app} verification code is {code}. It expires in {minutes} minutes.",
        "Your {app} verification code is",
    ),
    (
        "es",
        "Tu código de verificación de {app} es {code}. Caduca en {minutes} minutos.",
        "Tu código de verificación de {app} es",
    ),
    (
        "fr",
        "Votre code de vérification {app} est {code}. Il expire dans {minutes} minutes.",
        "Votre code de vérification {app} est",
    ),
    (
        "de",
        "Ihr {app} Bestätigungscode lautet {code}. Er läuft in {minutes} Minuten ab.",
        "Ihr {app} Bestätigungscode lautet",
    ),
    (
        "pt",
        "Seu código de verificação {app} é {code}. Ele expira em {minutes} minutos.",
        "Seu código de verificação {app} é",
    ),
    ("ja", "{app}の認証コードは{code}です。有効期限は{minutes}分です。", "{app}の認証コードは"),
];

fn template(locale: &Locale) -> (&'static str, &'static str) {
    let (_, sms, voice) = TEMPLATES.iter().find(|(lang, _, _)| *lang == locale.language()).unwrap_or(&TEMPLATES[0]);
    (sms, voice)
}

fn minutes(valid_for: Duration) -> u64 {
    valid_for.as_secs().div_ceil(60).max(1)
}

pub struct Rendering<'a> {
    pub app_name: &'a str,
    pub to: &'a PhoneNumber,
    pub locale: &'a Locale,
    pub code: &'a Code,
    /// What remains of the code's lifetime.
    pub valid_for: Duration,
    pub reference: String,
    /// A signed link to this call's script, for providers that fetch it.
    pub script_url: Option<String>,
}

pub fn sms(r: Rendering<'_>) -> Sms {
    let (text, _) = template(r.locale);
    let body = text
        .replace("{app}", r.app_name)
        .replace("{minutes}", &minutes(r.valid_for).to_string())
        .replace("{code}", r.code.expose());
    Sms { to: r.to.clone(), body, validity: r.valid_for, reference: r.reference }
}

/// The call reads the intro and the digits one by one, twice.
pub fn voice(r: Rendering<'_>) -> VoiceCall {
    let (_, intro) = template(r.locale);
    VoiceCall {
        to: r.to.clone(),
        intro: intro.replace("{app}", r.app_name),
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

    fn rendering<'a>(to: &'a PhoneNumber, locale: &'a Locale, code: &'a Code) -> Rendering<'a> {
        Rendering {
            app_name: "Acme",
            to,
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
        let en = sms(rendering(&to, &Locale::default(), &code));
        assert_eq!(en.body, "Your Acme verification code is 0123456. It expires in 10 minutes.");
        assert_eq!(en.validity, Duration::from_secs(541));
        let fr = Locale::parse("fr-CA").unwrap();
        assert!(sms(rendering(&to, &fr, &code)).body.starts_with("Votre code de vérification Acme est 0123456"));
        let unknown = Locale::parse("xx").unwrap();
        assert!(sms(rendering(&to, &unknown, &code)).body.starts_with("Your Acme"));
    }

    #[test]
    fn voice_reads_digits_twice() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let code = Code::parse("0123456").unwrap();
        let call = voice(rendering(&to, &Locale::default(), &code));
        assert_eq!(call.intro, "Your Acme verification code is");
        assert_eq!(call.spoken_digits(), "0, 1, 2, 3, 4, 5, 6");
        assert_eq!(call.repeat, 2);
    }
}
