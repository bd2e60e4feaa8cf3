import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Appends stdout and stderr to this file as they come (long builds), instead of keeping them all in memory. */
  logFile?: string;
}

const KEEP_CHARS = 64 * 1024;

/** Runs a program to completion; a non-zero exit is a result, not an exception. With a log file only the output's tail is kept. */
export function runCommand(file: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = options.logFile === undefined ? undefined : createWriteStream(options.logFile, { flags: 'a' });
    let stdout = '';
    let stderr = '';
    const keep = (text: string) => (log === undefined || text.length <= KEEP_CHARS ? text : text.slice(-KEEP_CHARS));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      log?.write(chunk);
      stdout = keep(stdout + chunk);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      log?.write(chunk);
      stderr = keep(stderr + chunk);
    });
    const finish = (code: number) => {
      if (log === undefined) resolve({ code, stdout, stderr });
      else log.end(() => resolve({ code, stdout, stderr }));
    };
    child.once('error', (err) => {
      stderr += `${err.message}\n`;
      finish(-1);
    });
    child.once('close', (code) => finish(code ?? -1));
  });
}

/** Like runCommand, but a non-zero exit throws with the command and the end of its output. */
export async function mustRun(file: string, args: readonly string[], options: CommandOptions = {}): Promise<string> {
  const result = await runCommand(file, args, options);
  if (result.code !== 0) {
    const where = options.logFile === undefined ? '' : ` (full log: ${options.logFile})`;
    const tail = `${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${file} ${args.join(' ')} exited with ${result.code}${where}:\n${tail}`);
  }
  return result.stdout;
}
