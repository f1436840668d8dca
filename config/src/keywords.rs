//! The keywords both front-ends share, one list per block: the keepalived.conf
//! tables (`keepalived_front`) and the TOML key lists (`toml_front`) are built
//! from these, so a keyword is added in one place. Each macro gives a
//! `&[&str]` of the block's shared keywords, with a front-end's own keys
//! (TOML's `ip` / `port`, haldir extensions) before the `;` and after it.

/// The connection keywords of every checker but `MISC_CHECK` (`TCP_CHECK`).
macro_rules! connection_keywords {
    ($($extra:literal),* $(,)?) => {
        &[
            "connect_ip",
            "connect_port",
            "bindto",
            "bind_port",
            "connect_timeout",
            "retry",
            "nb_get_retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
            $($extra),*
        ]
    };
}

/// `HTTP_GET` (and `SSL_GET`, which may add its own).
macro_rules! http_keywords {
    ($($extra:literal),* $(,)?) => {
        connection_keywords!("url", "virtualhost", $($extra),*)
    };
}

/// `DNS_CHECK`.
macro_rules! dns_keywords {
    () => {
        connection_keywords!("type", "name")
    };
}

/// `SMTP_CHECK`.
macro_rules! smtp_keywords {
    () => {
        connection_keywords!("helo_name")
    };
}

/// `UDP_CHECK`.
macro_rules! udp_keywords {
    () => {
        connection_keywords!(
            "payload",
            "require_reply",
            "min_reply_length",
            "max_reply_length"
        )
    };
}

/// `PING_CHECK` (keepalived: the connection options; the port is not used).
macro_rules! ping_keywords {
    () => {
        connection_keywords!()
    };
}

/// `MISC_CHECK` (keepalived: no connection options).
macro_rules! misc_keywords {
    ($($extra:literal),* $(,)?) => {
        &[
            "misc_path",
            "misc_timeout",
            "misc_dynamic",
            "user",
            $($extra,)*
            "retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
            "alpha",
        ]
    };
}

/// A `url` of `HTTP_GET` / `SSL_GET`.
macro_rules! url_keywords {
    () => {
        &[
            "path",
            "digest",
            "status_code",
            "regex",
            "regex_no_match",
            "virtualhost",
        ]
    };
}

/// `virtual_server`.
macro_rules! virtual_server_keywords {
    ($($before:literal),* ; $($after:literal),* $(,)?) => {
        &[
            $($before,)*
            "protocol",
            "lb_algo",
            "lvs_sched",
            "lb_kind",
            "lvs_method",
            "persistence_timeout",
            "persistence_granularity",
            "ops",
            "delay_loop",
            "real_server",
            // Health checking.
            "quorum",
            "hysteresis",
            "sorry_server",
            "sorry_server_inhibit",
            "inhibit_on_failure",
            "alpha",
            "omega",
            "warmup",
            "connect_timeout",
            "retry",
            "nb_get_retry",
            "delay_before_retry",
            "virtualhost",
            "quorum_up",
            "quorum_down",
            $($after),*
        ]
    };
}

/// `real_server`.
macro_rules! real_server_keywords {
    ($($before:literal),* ; $($after:literal),* $(,)?) => {
        &[
            $($before,)*
            "weight",
            "uthreshold",
            "lthreshold",
            // Health checking.
            "inhibit_on_failure",
            "alpha",
            "warmup",
            "delay_loop",
            "connect_timeout",
            "retry",
            "nb_get_retry",
            "delay_before_retry",
            "virtualhost",
            "notify_up",
            "notify_down",
            "TCP_CHECK",
            "HTTP_GET",
            "SSL_GET",
            "MISC_CHECK",
            "DNS_CHECK",
            "SMTP_CHECK",
            "UDP_CHECK",
            "PING_CHECK",
            $($after),*
        ]
    };
}

/// `vrrp_script`.
macro_rules! vrrp_script_keywords {
    ($($before:literal),* ; $($after:literal),* $(,)?) => {
        &[
            $($before,)*
            "script",
            "interval",
            "timeout",
            "weight",
            "rise",
            "fall",
            "user",
            $($after,)*
            "init_fail",
        ]
    };
}

/// `track_file` (keepalived also reads it as `vrrp_track_file`).
macro_rules! track_file_keywords {
    ($($before:literal),* ; $($after:literal),* $(,)?) => {
        &[
            $($before,)*
            "file",
            "weight",
            $($after,)*
            "init_file",
        ]
    };
}

/// `track_process` (keepalived reads it as `vrrp_track_process`).
macro_rules! track_process_keywords {
    ($($before:literal),* ; $($after:literal),* $(,)?) => {
        &[
            $($before,)*
            "process",
            "param_match",
            "weight",
            $($after,)*
            "quorum",
            "quorum_max",
            "delay",
            "fork_delay",
            "terminate_delay",
            "full_command",
        ]
    };
}
