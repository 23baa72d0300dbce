//! `sinew completions SHELL`: the shell completion script, on stdout.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
#[command(after_help = "Install, for example:\n  \
    sinew completions bash > ~/.local/share/bash-completion/completions/sinew\n  \
    sinew completions zsh > ~/.zfunc/_sinew        (with fpath+=~/.zfunc before compinit)\n  \
    sinew completions fish > ~/.config/fish/completions/sinew.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh or fish (elvish and powershell work too).
    shell: Shell,
}

/// Write the script for `args.shell` completing `command` (the whole CLI).
pub(crate) fn run(args: CompletionsArgs, mut command: clap::Command) -> ExitCode {
    // Generated into memory first: clap_complete panics on a failed write,
    // and a closed stdout (`| head`) is an ordinary exit here.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "sinew", &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinew completions: cannot write the script: {e}");
            ExitCode::from(crate::call::EXIT_FAILED)
        }
    }
}
