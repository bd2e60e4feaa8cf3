import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { find, type KubeObject } from './chart.js';
import { ConfigMap, Deployment, Pod } from './models.js';

/** Typed views of rendered objects for the assertions. */

export function deployments(objects: readonly KubeObject[]): IDeployment[] {
  return objects.filter((o): o is KubeObject & IDeployment => Deployment.is(o));
}

export function deployment(objects: readonly KubeObject[], name: string): IDeployment {
  const found = find(objects, 'Deployment', name);
  if (!Deployment.is(found)) throw new Error(`${name} is not an apps/v1 Deployment`);
  return found;
}

export function podSpec(d: IDeployment): IPodSpec {
  const spec = d.spec?.template.spec;
  if (spec === undefined) throw new Error(`Deployment ${d.metadata?.name ?? '?'} has no pod spec`);
  return spec;
}

export function podLabels(d: IDeployment): Record<string, string> {
  return d.spec?.template.metadata?.labels ?? {};
}

/** The one container of a component's pod. */
export function mainContainer(d: IDeployment): IContainer {
  const containers = podSpec(d).containers;
  const [container] = containers;
  if (container === undefined || containers.length !== 1) throw new Error(`expected one container in ${d.metadata?.name ?? '?'}`);
  return container;
}

/** Pod specs of everything that runs a pod: Deployments and bare Pods (the helm test hook). */
export function allPodSpecs(objects: readonly KubeObject[]): { owner: string; spec: IPodSpec }[] {
  const specs: { owner: string; spec: IPodSpec }[] = [];
  for (const o of objects) {
    if (Deployment.is(o)) specs.push({ owner: `Deployment/${o.metadata?.name ?? '?'}`, spec: podSpec(o) });
    if (Pod.is(o) && o.spec !== undefined) specs.push({ owner: `Pod/${o.metadata?.name ?? '?'}`, spec: o.spec });
  }
  return specs;
}

export function configMapData(objects: readonly KubeObject[], name: string): Record<string, string> {
  const found = find(objects, 'ConfigMap', name);
  if (!ConfigMap.is(found)) throw new Error(`${name} is not a v1 ConfigMap`);
  return found.data ?? {};
}

/** True when every label of the selector is on the pod. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (selector === undefined || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

/**
 * The environment a container gets, as the names Kubernetes sets: envFrom ConfigMaps (their data) and
 * env entries. Values from a Secret or the downward API are `undefined` here (not known at render time).
 */
export function containerEnvironment(
  objects: readonly KubeObject[],
  container: IContainer,
): Map<string, { value: string | undefined; source: string }> {
  const env = new Map<string, { value: string | undefined; source: string }>();
  for (const from of container.envFrom ?? []) {
    const name = from.configMapRef?.name;
    if (name === undefined) throw new Error(`envFrom other than a ConfigMap in container ${container.name}`);
    for (const [key, value] of Object.entries(configMapData(objects, name)))
      env.set((from.prefix ?? '') + key, { value, source: `ConfigMap/${name}` });
  }
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env.set(variable.name, { value: variable.value, source: 'env' });
    else if (variable.valueFrom?.secretKeyRef)
      env.set(variable.name, { value: undefined, source: `Secret/${variable.valueFrom.secretKeyRef.name}` });
    else if (variable.valueFrom?.fieldRef)
      env.set(variable.name, { value: undefined, source: `field ${variable.valueFrom.fieldRef.fieldPath}` });
    else throw new Error(`unsupported env source for ${variable.name} in container ${container.name}`);
  }
  return env;
}
