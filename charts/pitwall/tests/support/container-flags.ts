import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { mainContainer, podSpec } from './objects.js';

/**
 * `podman run` flags that give a container what the chart's pod and container securityContext and
 * volumes give it in the cluster. A field this mapping does not know fails, so the image smoke test
 * cannot quietly run looser than the chart.
 */
export function podmanSecurityFlags(deployment: IDeployment): string[] {
  const spec = podSpec(deployment);
  const container = mainContainer(deployment);
  const pod = spec.securityContext ?? {};
  const context = container.securityContext ?? {};
  const flags: string[] = [];
  const known = new Set([
    'allowPrivilegeEscalation',
    'readOnlyRootFilesystem',
    'runAsNonRoot',
    'runAsUser',
    'runAsGroup',
    'capabilities',
    'seccompProfile',
    'fsGroup',
  ]);
  for (const key of [...Object.keys(pod), ...Object.keys(context)])
    if (!known.has(key)) throw new Error(`securityContext.${key} has no podman equivalent here`);

  const user = context.runAsUser ?? pod.runAsUser;
  const group = context.runAsGroup ?? pod.runAsGroup;
  if (user === undefined || group === undefined) throw new Error('the chart sets no runAsUser/runAsGroup');
  if ((context.runAsNonRoot ?? pod.runAsNonRoot) === true && user === 0) throw new Error('runAsNonRoot with user 0');
  flags.push('--user', `${user}:${group}`);
  // fsGroup: the pod's processes also belong to it (volumes are owned by it).
  if (pod.fsGroup !== undefined) flags.push('--group-add', String(pod.fsGroup));
  if (context.readOnlyRootFilesystem === true) flags.push('--read-only', '--read-only-tmpfs=false');
  if (context.allowPrivilegeEscalation === false) flags.push('--security-opt=no-new-privileges');
  for (const cap of context.capabilities?.drop ?? []) flags.push(`--cap-drop=${cap}`);
  for (const cap of context.capabilities?.add ?? []) flags.push(`--cap-add=${cap}`);
  const seccomp = context.seccompProfile?.type ?? pod.seccompProfile?.type;
  // podman's default profile is the runtime default; anything else would need its own flag.
  if (seccomp !== undefined && seccomp !== 'RuntimeDefault') throw new Error(`seccompProfile ${seccomp} has no podman equivalent here`);

  for (const mount of container.volumeMounts ?? []) {
    const volume = spec.volumes?.find((v) => v.name === mount.name);
    if (volume?.emptyDir === undefined) throw new Error(`volume ${mount.name} is not an emptyDir`);
    const size =
      volume.emptyDir.sizeLimit === undefined ? '' : `,size=${String(volume.emptyDir.sizeLimit).replace(/Mi$/, 'm').replace(/Gi$/, 'g')}`;
    flags.push('--tmpfs', `${mount.mountPath}:rw,mode=1777${size}`);
  }
  return flags;
}
