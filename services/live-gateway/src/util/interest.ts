/**
 * Whether someone still wants the result of a piece of work: a connection is interested while it is
 * open. Work queued for Directus whose every interested party is gone is dropped instead of run.
 */
export interface Interest {
  readonly active: boolean;
}

/** Always interested: work nobody can abandon (the gateway's own reads). */
export const ALWAYS: Interest = { active: true };

/**
 * The parties sharing one call (identical concurrent checks join one call): it is wanted while any of
 * them is. A party that joins without an Interest keeps it wanted for good.
 */
export class SharedInterest implements Interest {
  private readonly parties: Interest[] = [];
  private always = false;

  constructor(first: Interest | undefined) {
    this.add(first);
  }

  add(party: Interest | undefined): void {
    if (party === undefined || party === ALWAYS) this.always = true;
    else if (!this.always) this.parties.push(party);
  }

  get active(): boolean {
    return this.always || this.parties.some((party) => party.active);
  }
}
