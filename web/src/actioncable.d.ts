declare module "@rails/actioncable" {
  interface Subscription {
    perform(action: string, data?: object): void;
    unsubscribe(): void;
  }
  interface Consumer {
    subscriptions: { create(params: object, mixin: object): Subscription };
    disconnect(): void;
  }
  export function createConsumer(url?: string): Consumer;
}
