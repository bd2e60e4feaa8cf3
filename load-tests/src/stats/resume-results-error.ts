/** The reconnect storm's viewer results do not add up: a viewer missing or reported twice (a fault of the bench, not the gateway). */
export class ResumeResultsError extends Error {
  readonly code = 'resume_results_inconsistent';

  constructor(message: string) {
    super(message);
    this.name = 'ResumeResultsError';
  }
}
