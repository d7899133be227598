//! What a person reads or hears. The code appears here and in the provider
//! request, nowhere else.

use std::time::Duration;

use verifyd_providers::domain::{Code, Locale, PhoneNumber};
use verifyd_providers::{Sms, VoiceCall};

/// One language's texts. `{code}`, `{app}` and `{validity}` are filled in;
/// `{validity}` is the time left in that language's words (see [`validity`]).
struct Language {
    tag: &'static str,
    sms: &'static str,
    voice_intro: &'static str,
    /// One minute, several minutes (`{n}` is the number).
    minutes: (&'static str, &'static str),
    /// One second, several seconds.
    seconds: (&'static str, &'static str),
}

const LANGUAGES: &[Language] = &[
    Language {
        tag: "en",
        sms: "Your {app} verification code is {code}. It expires in {validity}.",
        voice_intro: "Your {app} verification code is",
        minutes: ("{n} minute", "{n} minutes"),
        seconds: ("{n} second", "{n} seconds"),
    },
    Language {
        tag: "es",
        sms: "Tu código de verificación de {app} es {code}. Caduca en {validity}.",
        voice_intro: "Tu código de verificación de {app} es",
        minutes: ("{n} minuto", "{n} minutos"),
        seconds: ("{n} segundo", "{n} segundos"),
    },
    Language {
        tag: "fr",
        sms: "Votre code de vérification {app} est {code}. Il expire dans {validity}.",
        voice_intro: "Votre code de vérification {app} est",
        minutes: ("{n} minute", "{n} minutes"),
        seconds: ("{n} seconde", "{n} secondes"),
    },
    Language {
        tag: "de",
        sms: "Ihr {app} Bestätigungscode lautet {code}. Er läuft in {validity} ab.",
        voice_intro: "Ihr {app} Bestätigungscode lautet",
        minutes: ("{n} Minute", "{n} Minuten"),
        seconds: ("{n} Sekunde", "{n} Sekunden"),
    },
    Language {
        tag: "pt",
        sms: "Seu código de verificação {app} é {code}. Ele expira em {validity}.",
        voice_intro: "Seu código de verificação {app} é",
        minutes: ("{n} minuto", "{n} minutos"),
        seconds: ("{n} segundo", "{n} segundos"),
    },
    // Japanese counts without a plural.
    Language {
        tag: "ja",
        sms: "{app}の認証コードは{code}です。有効期限は{validity}です。",
        voice_intro: "{app}の認証コードは",
        minutes: ("{n}分", "{n}分"),
        seconds: ("{n}秒", "{n}秒"),
    },
];

fn language(locale: &Locale) -> &'static Language {
    LANGUAGES.iter().find(|l| l.tag == locale.language()).unwrap_or(&LANGUAGES[0])
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
    let language = language(r.locale);
    let body = language
        .sms
        .replace("{app}", r.app_name)
        .replace("{validity}", &validity(language, r.valid_for))
        .replace("{code}", r.code.expose());
    Sms { to: r.to.clone(), body, validity: r.valid_for, reference: r.reference }
}

/// The call reads the intro and the digits one by one, twice.
pub fn voice(r: Rendering<'_>) -> VoiceCall {
    VoiceCall {
        to: r.to.clone(),
        intro: language(r.locale).voice_intro.replace("{app}", r.app_name),
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
    fn the_time_left_is_singular_or_plural_and_in_seconds_below_a_minute() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let code = Code::parse("0123456").unwrap();
        let text = |lang: &str, secs: f64| {
            let locale = Locale::parse(lang).unwrap();
            let mut r = rendering(&to, &locale, &code);
            r.valid_for = Duration::from_secs_f64(secs);
            sms(r).body
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
    fn voice_reads_digits_twice() {
        let to = PhoneNumber::parse("+14155552671").unwrap();
        let code = Code::parse("0123456").unwrap();
        let call = voice(rendering(&to, &Locale::default(), &code));
        assert_eq!(call.intro, "Your Acme verification code is");
        assert_eq!(call.spoken_digits(), "0, 1, 2, 3, 4, 5, 6");
        assert_eq!(call.repeat, 2);
    }
}
